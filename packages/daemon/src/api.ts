/**
 * The daemon's HTTP API on a unix socket that only its owner (root) can open: the socket is 0600
 * in a directory that is 0700. JSON in, JSON out; bodies are capped. Routes:
 *
 *   GET    /v1/status                     peers, blobs held, cache, bytes by source, mounts
 *   POST   /v1/preheat    { image }       every chunk of the image into the cache, every blob provided
 *   GET    /v1/mounts                     the mounts
 *   POST   /v1/mounts     { image, mountpoint, mode? }
 *   DELETE /v1/mounts/ID                  (or ?mountpoint=PATH)
 *   GET    /v1/file?image=REF&path=/P     a file's bytes, read through the cache and peers
 */
import { lstat, mkdir, unlink, chmod, stat } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { once } from 'node:events'
import { dirname } from 'node:path'
import { DaemonConfigError, ImagePathError, MountNotFoundError, MountsUnsupportedError } from './errors.js'

export interface ApiHandlers {
  status: () => Promise<unknown>
  preheat: (body: { image: string }, signal: AbortSignal) => Promise<unknown>
  mounts: () => Promise<unknown>
  mount: (body: { image: string, mountpoint: string, mode?: string }, signal: AbortSignal) => Promise<unknown>
  unmount: (idOrMountpoint: string) => Promise<unknown>
  readFile: (image: string, path: string, signal: AbortSignal) => Promise<Uint8Array>
  /** Counts failed requests, for the errors metric. */
  onError: (err: unknown) => void
}

const MAX_BODY_BYTES = 64 * 1024

class BadRequestError extends Error {
  override name = 'BadRequestError'
}

async function readJson (request: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = []
  let size = 0
  for await (const part of request as AsyncIterable<Buffer>) {
    size += part.length
    if (size > MAX_BODY_BYTES) throw new BadRequestError(`request body is over ${MAX_BODY_BYTES} bytes`)
    parts.push(part)
  }
  if (size === 0) return {}
  let value: unknown
  try {
    value = JSON.parse(Buffer.concat(parts).toString('utf8'))
  } catch (err: any) {
    throw new BadRequestError(`request body is not JSON: ${err?.message}`)
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new BadRequestError('request body must be a JSON object')
  return value as Record<string, unknown>
}

function requireString (body: Record<string, unknown>, key: string): string {
  const value = body[key]
  if (typeof value !== 'string' || value === '') throw new BadRequestError(`'${key}' must be a non-empty string, got ${JSON.stringify(value)}`)
  return value
}

function statusOf (err: any): number {
  if (err instanceof BadRequestError || err?.name === 'UsageError' || err?.name === 'InvalidReferenceError' || err?.name === 'InvalidArgumentError') return 400
  if (err instanceof MountNotFoundError || err instanceof ImagePathError || err?.name === 'ManifestNotFoundError' || err?.name === 'NotNydusImageError') return 404
  if (err instanceof MountsUnsupportedError) return 501
  return 500
}

function sendJson (response: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body)
}

async function route (handlers: ApiHandlers, request: IncomingMessage, response: ServerResponse, signal: AbortSignal): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://daemon')
  const method = request.method ?? 'GET'
  const path = url.pathname
  if (method === 'GET' && path === '/v1/status') return sendJson(response, 200, await handlers.status())
  if (method === 'POST' && path === '/v1/preheat') {
    const body = await readJson(request)
    return sendJson(response, 200, await handlers.preheat({ image: requireString(body, 'image') }, signal))
  }
  if (method === 'GET' && path === '/v1/mounts') return sendJson(response, 200, await handlers.mounts())
  if (method === 'POST' && path === '/v1/mounts') {
    const body = await readJson(request)
    const mode = body.mode
    if (mode !== undefined && mode !== 'fuse' && mode !== 'erofs') throw new BadRequestError(`'mode' must be "fuse" or "erofs", got ${JSON.stringify(mode)}`)
    return sendJson(response, 201, await handlers.mount({
      image: requireString(body, 'image'),
      mountpoint: requireString(body, 'mountpoint'),
      ...(mode !== undefined ? { mode } : {})
    }, signal))
  }
  if (method === 'DELETE' && path.startsWith('/v1/mounts')) {
    const id = path === '/v1/mounts' ? url.searchParams.get('mountpoint') : decodeURIComponent(path.slice('/v1/mounts/'.length))
    if (id == null || id === '') throw new BadRequestError('expected DELETE /v1/mounts/ID or /v1/mounts?mountpoint=PATH')
    return sendJson(response, 200, await handlers.unmount(id))
  }
  if (method === 'GET' && path === '/v1/file') {
    const image = url.searchParams.get('image')
    const filePath = url.searchParams.get('path')
    if (image == null || filePath == null) throw new BadRequestError('expected ?image=REF&path=/PATH')
    const bytes = await handlers.readFile(image, filePath, signal)
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length }).end(bytes)
    return
  }
  sendJson(response, 404, { error: 'NotFound', message: `no route ${method} ${path}` })
}

/** Whether something answers on a unix socket (a live daemon), within a second. */
async function socketAnswers (path: string): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = connect(path)
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, 1000)
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolve(true) })
    socket.once('error', () => { clearTimeout(timer); resolve(false) })
  })
}

/**
 * Makes the socket's directory (0700) and refuses one that others may enter or write, removes a
 * stale socket left by a killed daemon, and refuses to start beside a live one.
 */
async function prepareSocketPath (path: string): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const info = await stat(dir)
  if ((info.mode & 0o077) !== 0) {
    throw new DaemonConfigError(`api socket directory ${dir} has mode ${(info.mode & 0o7777).toString(8)}; expected a directory only its owner can enter (0700)`)
  }
  if (process.getuid != null && info.uid !== process.getuid()) {
    throw new DaemonConfigError(`api socket directory ${dir} belongs to uid ${info.uid}, not to this daemon's uid ${process.getuid()}`)
  }
  const existing = await lstat(path).catch(() => undefined)
  if (existing == null) return
  if (!existing.isSocket()) throw new DaemonConfigError(`api socket path ${path} exists and is not a socket`)
  if (await socketAnswers(path)) throw new DaemonConfigError(`a daemon already answers on ${path}`)
  await unlink(path)
}

export async function serveApi (path: string, handlers: ApiHandlers, stopSignal: AbortSignal): Promise<Server> {
  await prepareSocketPath(path)
  const server = createServer((request, response) => {
    const controller = new AbortController()
    const onStop = (): void => { controller.abort() }
    stopSignal.addEventListener('abort', onStop, { once: true })
    // The client hanging up aborts the work it asked for.
    response.once('close', () => { if (!response.writableFinished) controller.abort() })
    route(handlers, request, response, controller.signal).catch((err: any) => {
      handlers.onError(err)
      if (!response.headersSent) sendJson(response, statusOf(err), { error: err?.name ?? 'Error', message: String(err?.message ?? err) })
      else response.destroy()
    }).finally(() => { stopSignal.removeEventListener('abort', onStop) })
  })
  // The socket is created with the process umask: narrow it before listening, then set 0600 exactly.
  const umask = process.umask(0o177)
  try {
    server.listen(path)
    await once(server, 'listening')
  } finally {
    process.umask(umask)
  }
  await chmod(path, 0o600)
  return server
}
