/**
 * The transport under every registry call: base URLs (TLS or plain HTTP), authorization (basic,
 * bearer tokens from the challenge, cached per scope), redirects followed by hand so credentials
 * never reach another host, and bounded retries with exponential backoff.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { AbortError, throwIfAborted } from '@shoal/interface'
import type { AbortOptions } from '@shoal/interface'
import { basicAuthorization, loadCredentials, parseWwwAuthenticate, TokenCache } from './auth.js'
import type { Credentials } from './auth.js'
import { RegistryAuthError, RegistryError, RegistryProtocolError, RetriesExhaustedError } from './errors.js'
import type { RegistryErrorDetail } from './errors.js'
import { apiHost, isInsecureRegistry } from './reference.js'

export interface RetryOptions {
  /** Attempts in all, the first included. Default 5. */
  attempts?: number
  /** Delay before the second attempt; doubles each time, with jitter. Default 200 ms. */
  initialDelayMs?: number
  /** Longest single delay (also caps a Retry-After). Default 5 s. */
  maxDelayMs?: number
  /** No new attempt starts once this much time has passed since the first. Default 60 s. */
  maxElapsedMs?: number
}

export interface TransportInit {
  /** Hosts (`host` or `host:port`) spoken to over plain HTTP besides loopback ones. */
  insecureRegistries?: string[]
  /** Credentials per registry (`host[:port]`); these win over the auth files. */
  credentials?: Record<string, Credentials>
  /** Read ~/.docker/config.json and $REGISTRY_AUTH_FILE. Default true. */
  useAuthFiles?: boolean
  /** Environment for the auth file lookup; default process.env. */
  env?: Record<string, string | undefined>
  /** Home directory for ~/.docker/config.json; default os.homedir(). */
  home?: string
  retry?: RetryOptions
  /** Most redirects followed for one request. Default 5. */
  maxRedirects?: number
  /** Receives one line per request and retry; never a header, a token or a password. */
  log?: (message: string) => void
  /** Clock for token expiry; default Date.now. */
  now?: () => number
  /** The fetch to use; default the global (undici) fetch. */
  fetch?: typeof globalThis.fetch
}

export type RequestBody = Uint8Array | (() => ReadableStream<Uint8Array>)

export interface RegistryRequest extends AbortOptions {
  method: string
  registry: string
  /** A path under the registry's base URL (`/v2/...`) or an absolute URL (an upload Location). */
  url: string
  /** Token scopes this request needs, e.g. `repository:a/b:pull`. */
  scopes?: string[]
  headers?: Record<string, string>
  body?: RequestBody
  /** Statuses that count as success; anything else raises (404 through `notFound`). */
  expect: number[]
  /** The error for a 404; default a RegistryError. */
  notFound?: () => Error
}

const MAX_ERROR_BODY_BYTES = 64 * 1024
const MAX_TOKEN_BODY_BYTES = 1024 * 1024
/** Bearer token lifetime when the token endpoint does not say (the distribution spec's default). */
const DEFAULT_TOKEN_LIFETIME_SECONDS = 60

const CONNECTION_ERROR_CODES = new Set([
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'
])

/** A body that ended before its declared length: the connection broke, the request may be retried. */
export class ConnectionLostError extends RegistryProtocolError {
  override name = 'ConnectionLostError'
}

interface RegistryAuthState {
  scheme: 'basic' | 'bearer'
  realm?: string
  service?: string
}

export class RegistryTransport {
  private readonly insecure: string[]
  private readonly explicitCredentials: Record<string, Credentials>
  private readonly credentialCache = new Map<string, Promise<Credentials | undefined>>()
  private readonly authStates = new Map<string, RegistryAuthState>()
  private readonly tokens: TokenCache
  private readonly retry: Required<RetryOptions>
  private readonly fetchImpl: typeof globalThis.fetch
  private readonly maxRedirects: number
  readonly log: (message: string) => void

  constructor (private readonly init: TransportInit = {}) {
    this.insecure = init.insecureRegistries ?? []
    this.explicitCredentials = init.credentials ?? {}
    this.tokens = new TokenCache(init.now ?? Date.now)
    this.retry = {
      attempts: init.retry?.attempts ?? 5,
      initialDelayMs: init.retry?.initialDelayMs ?? 200,
      maxDelayMs: init.retry?.maxDelayMs ?? 5000,
      maxElapsedMs: init.retry?.maxElapsedMs ?? 60_000
    }
    this.fetchImpl = init.fetch ?? globalThis.fetch
    this.maxRedirects = init.maxRedirects ?? 5
    this.log = init.log ?? (() => {})
  }

  baseUrl (registry: string): string {
    return `${isInsecureRegistry(registry, this.insecure) ? 'http' : 'https'}://${apiHost(registry)}`
  }

  async credentialsFor (registry: string): Promise<Credentials | undefined> {
    const explicit = this.explicitCredentials[registry]
    if (explicit != null) return explicit
    if (this.init.useAuthFiles === false) return undefined
    let pending = this.credentialCache.get(registry)
    if (pending == null) {
      pending = loadCredentials(registry, { env: this.init.env, home: this.init.home })
      this.credentialCache.set(registry, pending)
    }
    return await pending
  }

  /**
   * Runs `operation` until it succeeds, fails with an error that is not transient, or the budget
   * (attempts, elapsed time) runs out. Transient: 5xx, 429, a connection reset or a cut body.
   */
  async withRetries<T>(what: string, options: AbortOptions, operation: (attempt: number) => Promise<T>): Promise<T> {
    const started = Date.now()
    let delay = this.retry.initialDelayMs
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(options)
      try {
        return await operation(attempt)
      } catch (err) {
        if (isAbort(err, options.signal)) throw new AbortError()
        if (!isTransient(err)) throw err
        const retryAfterMs = err instanceof RegistryError ? retryAfterOf(err) : undefined
        const wait = Math.min(this.retry.maxDelayMs, retryAfterMs ?? delay * (0.75 + Math.random() * 0.5))
        if (attempt >= this.retry.attempts || Date.now() - started + wait > this.retry.maxElapsedMs) {
          throw new RetriesExhaustedError(what.split(' ')[0] ?? what, what.slice(what.indexOf(' ') + 1), attempt, err)
        }
        this.log(`${what}: attempt ${attempt} failed (${describe(err)}), retrying in ${Math.round(wait)} ms`)
        try {
          await sleep(wait, undefined, { signal: options.signal })
        } catch {
          throw new AbortError()
        }
        delay = Math.min(this.retry.maxDelayMs, delay * 2)
      }
    }
  }

  /**
   * One request, authorized, redirects followed. Returns the response when its status is expected
   * (body unread); otherwise consumes the body and throws the matching error. Does not retry:
   * callers wrap whole operations (request and body) in withRetries.
   */
  async request (req: RegistryRequest): Promise<Response> {
    throwIfAborted(req)
    const url = new URL(req.url, this.baseUrl(req.registry)).toString()
    const scopes = req.scopes ?? []
    let response: Response | undefined
    let sentAuthorization: string | undefined
    let refreshedOnce = false
    // At most: the first try, then one with fresh credentials after a challenge.
    for (let round = 0; round < 2; round++) {
      sentAuthorization = await this.authorizationFor(req.registry, scopes, req)
      response = await this.fetchFollowingRedirects(url, req, sentAuthorization)
      this.log(`${req.method} ${redact(url)} -> ${response.status}`)
      if (response.status !== 401 || refreshedOnce) break
      const retryWith = await this.learnFromChallenge(req.registry, scopes, response, sentAuthorization, req)
      if (!retryWith) break
      await response.body?.cancel().catch(() => {})
      refreshedOnce = true
    }
    if (response == null) throw new RegistryProtocolError(`${req.method} ${url}: no response`)
    if (req.expect.includes(response.status)) return response

    const errors = await readErrorBody(response)
    if (response.status === 404 && req.notFound != null) throw req.notFound()
    if (response.status === 401 || response.status === 403) {
      const credentials = await this.credentialsFor(req.registry)
      throw new RegistryAuthError(req.registry, credentials?.username, req.method, redact(url), response.status, errors)
    }
    const error = new RegistryError(req.method, redact(url), response.status, errors)
    const retryAfter = response.headers.get('retry-after')
    if (retryAfter != null) retryAfterHeaders.set(error, retryAfter)
    throw error
  }

  private async authorizationFor (registry: string, scopes: string[], options: AbortOptions): Promise<string | undefined> {
    const state = this.authStates.get(registry)
    if (state == null) return undefined
    if (state.scheme === 'basic') {
      const credentials = await this.credentialsFor(registry)
      return credentials != null ? basicAuthorization(credentials) : undefined
    }
    const scopeKey = scopes.join(' ')
    const cached = this.tokens.get(registry, scopeKey)
    if (cached != null) return `Bearer ${cached}`
    // The registry wants tokens: fetch one for this scope before asking, saving a 401 round trip.
    const token = await this.fetchToken(registry, state, scopes, options)
    return `Bearer ${token}`
  }

  /** Reads a 401's challenge; returns true when a retry with new credentials is worth it. */
  private async learnFromChallenge (registry: string, scopes: string[], response: Response, sent: string | undefined, options: AbortOptions): Promise<boolean> {
    const challenges = parseWwwAuthenticate(response.headers.get('www-authenticate') ?? '')
    const bearer = challenges.find(c => c.scheme === 'bearer')
    if (bearer != null && bearer.params.realm != null) {
      const state: RegistryAuthState = { scheme: 'bearer', realm: bearer.params.realm, ...(bearer.params.service != null ? { service: bearer.params.service } : {}) }
      this.authStates.set(registry, state)
      // A cached token that was refused is dropped, and one fresh token is fetched for the
      // scopes this request needs plus whatever the challenge names.
      this.tokens.delete(registry, scopes.join(' '))
      const challengeScopes = (bearer.params.scope ?? '').split(' ').filter(s => s !== '')
      const wanted = [...new Set([...scopes, ...challengeScopes])]
      await this.fetchToken(registry, state, wanted, options, scopes)
      return true
    }
    if (challenges.some(c => c.scheme === 'basic')) {
      const credentials = await this.credentialsFor(registry)
      if (credentials == null) return false
      const authorization = basicAuthorization(credentials)
      this.authStates.set(registry, { scheme: 'basic' })
      return authorization !== sent
    }
    return false
  }

  /** Fetches a token for `scopes` and caches it under `cacheScopes` (the scopes requests look it up by). */
  private async fetchToken (registry: string, state: RegistryAuthState, scopes: string[], options: AbortOptions, cacheScopes = scopes): Promise<string> {
    const scopeKey = cacheScopes.join(' ')
    const cached = this.tokens.get(registry, scopeKey)
    if (cached != null) return cached
    if (state.realm == null) throw new RegistryProtocolError(`registry ${registry} asked for a bearer token without a realm`)
    const tokenUrl = new URL(state.realm)
    if (tokenUrl.protocol !== 'https:' && tokenUrl.protocol !== 'http:') {
      throw new RegistryProtocolError(`registry ${registry} named a token realm that is not http(s): ${redact(state.realm)}`)
    }
    if (state.service != null) tokenUrl.searchParams.set('service', state.service)
    for (const scope of scopes) tokenUrl.searchParams.append('scope', scope)
    const credentials = await this.credentialsFor(registry)
    const headers: Record<string, string> = { accept: 'application/json' }
    if (credentials != null) headers.authorization = basicAuthorization(credentials)

    const { token, lifetime } = await this.withRetries(`GET ${redact(tokenUrl.toString())}`, options, async () => {
      const response = await this.fetchImpl(tokenUrl, { method: 'GET', headers, redirect: 'manual', ...(options.signal != null ? { signal: options.signal } : {}) })
      this.log(`GET ${redact(tokenUrl.toString())} -> ${response.status}`)
      if (response.status === 401 || response.status === 403) {
        const errors = await readErrorBody(response)
        throw new RegistryAuthError(registry, credentials?.username, 'GET', redact(tokenUrl.toString()), response.status, errors)
      }
      if (response.status !== 200) {
        const errors = await readErrorBody(response)
        throw new RegistryError('GET', redact(tokenUrl.toString()), response.status, errors)
      }
      const body = await readCapped(response, MAX_TOKEN_BODY_BYTES, `token response from ${redact(tokenUrl.toString())}`)
      let parsed: { token?: unknown, access_token?: unknown, expires_in?: unknown }
      try {
        parsed = JSON.parse(Buffer.from(body).toString('utf8'))
      } catch {
        throw new RegistryProtocolError(`token response from ${redact(tokenUrl.toString())} is not JSON`)
      }
      const value = typeof parsed.token === 'string' && parsed.token !== '' ? parsed.token : parsed.access_token
      if (typeof value !== 'string' || value === '') {
        throw new RegistryProtocolError(`token response from ${redact(tokenUrl.toString())} has neither "token" nor "access_token"`)
      }
      const expiresIn = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_LIFETIME_SECONDS
      return { token: value, lifetime: expiresIn }
    })
    this.tokens.set(registry, scopeKey, token, lifetime)
    return token
  }

  /**
   * Follows redirects itself: the Authorization header goes only to the origin it was meant for
   * (a registry redirecting blob downloads to object storage must not leak its token there).
   */
  private async fetchFollowingRedirects (url: string, req: RegistryRequest, authorization: string | undefined): Promise<Response> {
    const origin = new URL(url).origin
    let current = url
    let method = req.method
    let body = req.body
    for (let hop = 0; hop <= this.maxRedirects; hop++) {
      // identity: a transparently decompressed body would no longer match its digest. (fetch adds
      // it by itself to Range requests, so it is left out there to avoid sending it twice.)
      const headers: Record<string, string> = { ...(req.headers?.range == null ? { 'accept-encoding': 'identity' } : {}), ...req.headers }
      if (authorization != null && new URL(current).origin === origin) headers.authorization = authorization
      const init: RequestInit & { duplex?: 'half' } = { method, headers, redirect: 'manual' }
      if (req.signal != null) init.signal = req.signal
      if (body != null) {
        if (body instanceof Uint8Array) {
          init.body = body
        } else {
          init.body = body()
          init.duplex = 'half'
        }
      }
      const response = await this.fetchImpl(current, init)
      if (![301, 302, 303, 307, 308].includes(response.status)) return response
      const location = response.headers.get('location')
      await response.body?.cancel().catch(() => {})
      if (location == null) throw new RegistryProtocolError(`${method} ${redact(current)}: HTTP ${response.status} without a Location`)
      const next = new URL(location, current)
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new RegistryProtocolError(`${method} ${redact(current)}: redirect to a non-HTTP URL`)
      }
      this.log(`${method} ${redact(current)} -> ${response.status} redirect to ${redact(next.toString())}`)
      if (response.status === 303 || ((response.status === 301 || response.status === 302) && method !== 'GET' && method !== 'HEAD')) {
        method = 'GET'
        body = undefined
      }
      current = next.toString()
    }
    throw new RegistryProtocolError(`${req.method} ${redact(url)}: more than ${this.maxRedirects} redirects`)
  }
}

const retryAfterHeaders = new WeakMap<RegistryError, string>()

function retryAfterOf (err: RegistryError): number | undefined {
  const header = retryAfterHeaders.get(err)
  if (header == null) return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const date = Date.parse(header)
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined
}

export function isTransient (err: unknown): boolean {
  if (err instanceof RegistryError) return err.status >= 500 || err.status === 429
  if (err instanceof ConnectionLostError) return true
  if (err instanceof RegistryProtocolError) return false
  return isConnectionError(err)
}

function isConnectionError (err: unknown): boolean {
  let current: unknown = err
  for (let depth = 0; depth < 5 && current != null; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) return true
    // undici reports a body cut short as TypeError('terminated') with the socket error as cause.
    if (current instanceof TypeError && (current.message === 'terminated' || current.message === 'fetch failed') && (current as { cause?: unknown }).cause == null) return true
    current = (current as { cause?: unknown }).cause
  }
  return false
}

function isAbort (err: unknown, signal: AbortSignal | undefined): boolean {
  if (signal?.aborted === true) return true
  return err instanceof AbortError || (err instanceof Error && err.name === 'AbortError')
}

function describe (err: unknown): string {
  if (err instanceof RegistryError) return `HTTP ${err.status}`
  let current: unknown = err
  const parts: string[] = []
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code
    parts.push(typeof code === 'string' ? `${current.message} (${code})` : current.message)
    current = (current as { cause?: unknown }).cause
  }
  return parts.join(': ')
}

/** Query parameters that carry no secret; any other value (upload state, a presigned signature) is hidden. */
const PLAIN_QUERY_PARAMS = new Set(['digest', 'mount', 'from', 'scope', 'service', 'n', 'last'])

/** URLs are logged and put in errors: strip userinfo and every query value that might be a secret. */
export function redact (url: string): string {
  try {
    const parsed = new URL(url)
    parsed.username = ''
    parsed.password = ''
    for (const key of [...new Set(parsed.searchParams.keys())]) {
      if (!PLAIN_QUERY_PARAMS.has(key)) parsed.searchParams.set(key, '…')
    }
    return parsed.toString()
  } catch {
    return url
  }
}

/** Reads a response body of at most `max` bytes; a longer one is an error, not an allocation. */
export async function readCapped (response: Response, max: number, what: string): Promise<Uint8Array> {
  const declared = response.headers.get('content-length')
  if (declared != null && Number(declared) > max) {
    await response.body?.cancel().catch(() => {})
    throw new RegistryProtocolError(`${what} declares ${declared} bytes, more than the ${max} allowed`)
  }
  if (response.body == null) return new Uint8Array(0)
  const parts: Uint8Array[] = []
  let total = 0
  for await (const chunk of response.body) {
    total += chunk.byteLength
    if (total > max) {
      await response.body.cancel().catch(() => {})
      throw new RegistryProtocolError(`${what} is longer than the ${max} bytes allowed`)
    }
    parts.push(chunk)
  }
  if (declared != null && response.headers.get('content-encoding') == null && total !== Number(declared)) {
    throw new ConnectionLostError(`${what} ended after ${total} of ${declared} bytes`)
  }
  return Buffer.concat(parts, total)
}

async function readErrorBody (response: Response): Promise<RegistryErrorDetail[]> {
  try {
    const bytes = await readCapped(response, MAX_ERROR_BODY_BYTES, 'error body')
    if (bytes.byteLength === 0) return []
    const parsed: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'))
    const errors = (parsed as { errors?: unknown })?.errors
    if (!Array.isArray(errors)) return []
    return errors.slice(0, 20).filter(e => e != null && typeof e === 'object').map(e => ({
      code: typeof e.code === 'string' ? e.code : 'UNKNOWN',
      message: typeof e.message === 'string' ? e.message : '',
      ...(e.detail !== undefined ? { detail: e.detail } : {})
    }))
  } catch {
    await response.body?.cancel().catch(() => {})
    return []
  }
}
