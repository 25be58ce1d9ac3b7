import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { DOCKER_HUB } from './reference.js'

export interface Credentials {
  username: string
  password: string
}

/** An auth file holds at most this much: a bigger file is not a credentials file. */
const MAX_AUTH_FILE_BYTES = 1 << 20

export interface CredentialFileOptions {
  /** Defaults to process.env. */
  env?: Record<string, string | undefined>
  /** Defaults to os.homedir(). */
  home?: string
}

/**
 * Credentials for a registry from the files Docker and skopeo write: `$REGISTRY_AUTH_FILE`
 * (containers-auth.json) first, then `~/.docker/config.json`. Each has an `auths` map keyed by
 * host (or a URL of it) whose entries hold a base64 `auth` of `user:password`, or `username`
 * and `password`. Returns undefined when neither file names the registry.
 */
export async function loadCredentials (registry: string, options: CredentialFileOptions = {}): Promise<Credentials | undefined> {
  const env = options.env ?? process.env
  const files: string[] = []
  const authFile = env.REGISTRY_AUTH_FILE
  if (authFile != null && authFile !== '') files.push(authFile)
  const dockerConfigDir = env.DOCKER_CONFIG
  files.push(join(dockerConfigDir != null && dockerConfigDir !== '' ? dockerConfigDir : join(options.home ?? homedir(), '.docker'), 'config.json'))

  for (const file of files) {
    const auths = await readAuths(file)
    if (auths == null) continue
    const found = findCredentials(auths, registry)
    if (found != null) return found
  }
  return undefined
}

async function readAuths (file: string): Promise<Record<string, unknown> | undefined> {
  let text: string
  try {
    const bytes = await readFile(file)
    if (bytes.byteLength > MAX_AUTH_FILE_BYTES) return undefined
    text = bytes.toString('utf8')
  } catch {
    return undefined
  }
  try {
    const parsed: unknown = JSON.parse(text)
    if (parsed == null || typeof parsed !== 'object') return undefined
    const auths = (parsed as { auths?: unknown }).auths
    return auths != null && typeof auths === 'object' ? auths as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

/** Keys under which Docker and skopeo may have stored a registry's entry. */
function candidateKeys (registry: string): string[] {
  const keys = [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`, `https://${registry}/v2/`]
  if (registry === DOCKER_HUB || registry === 'index.docker.io' || registry === 'registry-1.docker.io') {
    keys.push('https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io')
  }
  return keys
}

export function findCredentials (auths: Record<string, unknown>, registry: string): Credentials | undefined {
  for (const key of candidateKeys(registry)) {
    const entry = auths[key]
    if (entry == null || typeof entry !== 'object') continue
    const credentials = decodeEntry(entry as Record<string, unknown>)
    if (credentials != null) return credentials
  }
  return undefined
}

function decodeEntry (entry: Record<string, unknown>): Credentials | undefined {
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string' && entry.username !== '') {
    return { username: entry.username, password: entry.password }
  }
  return undefined
}

export function basicAuthorization (credentials: Credentials): string {
  return 'Basic ' + Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64')
}

export interface AuthChallenge {
  /** Lower-case scheme: `basic` or `bearer`. */
  scheme: string
  params: Record<string, string>
}

/**
 * Parses a `WWW-Authenticate` header: `Bearer realm="https://auth",service="reg",scope="repository:a:pull"`.
 * Several challenges may be joined by commas; a token that is followed by a space (rather than `=`)
 * starts a new one.
 */
export function parseWwwAuthenticate (header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = []
  let i = 0
  const length = Math.min(header.length, 16 * 1024)
  let current: AuthChallenge | undefined
  while (i < length) {
    while (i < length && (header[i] === ' ' || header[i] === ',')) i++
    const tokenStart = i
    while (i < length && /[^\s=,]/.test(header[i] as string)) i++
    const token = header.slice(tokenStart, i)
    if (token === '') { i++; continue }
    if (header[i] === '=') {
      i++
      let value = ''
      if (header[i] === '"') {
        i++
        while (i < length && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < length) i++
          value += header[i]
          i++
        }
        i++
      } else {
        const valueStart = i
        while (i < length && header[i] !== ',') i++
        value = header.slice(valueStart, i).trim()
      }
      if (current != null) current.params[token.toLowerCase()] = value
    } else {
      current = { scheme: token.toLowerCase(), params: {} }
      challenges.push(current)
    }
  }
  return challenges
}

interface CachedToken {
  token: string
  expiresAt: number
}

/**
 * Bearer tokens per registry and scope. A token counts as expired a margin before its real expiry
 * (a tenth of its lifetime, at most 30 s) so a request never goes out with one about to lapse.
 */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>()

  constructor (private readonly now: () => number) {}

  get (registry: string, scope: string): string | undefined {
    const key = `${registry} ${scope}`
    const cached = this.tokens.get(key)
    if (cached == null) return undefined
    if (this.now() >= cached.expiresAt) {
      this.tokens.delete(key)
      return undefined
    }
    return cached.token
  }

  set (registry: string, scope: string, token: string, lifetimeSeconds: number): void {
    const lifetimeMs = lifetimeSeconds * 1000
    const margin = Math.min(30_000, lifetimeMs / 10)
    this.tokens.set(`${registry} ${scope}`, { token, expiresAt: this.now() + lifetimeMs - margin })
  }

  delete (registry: string, scope: string): void {
    this.tokens.delete(`${registry} ${scope}`)
  }
}
