/** A client of a daemon's API socket, for `shoal status`, `shoal preheat`, `shoal mount` and tests. */
import { request } from 'node:http'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { DaemonRequestError, DaemonUnreachableError } from './errors.js'
import type { DaemonStatus, MountInfo, PreheatResult } from './daemon.js'

export interface DaemonClient {
  readonly socketPath: string
  status: (options?: AbortOptions) => Promise<DaemonStatus>
  preheat: (image: string, options?: AbortOptions) => Promise<PreheatResult>
  mounts: (options?: AbortOptions) => Promise<MountInfo[]>
  mount: (image: string, mountpoint: string, options?: AbortOptions & { mode?: 'fuse' | 'erofs' }) => Promise<MountInfo>
  unmount: (idOrMountpoint: string, options?: AbortOptions) => Promise<void>
  readFile: (image: string, path: string, options?: AbortOptions) => Promise<Uint8Array>
}

/** Answers are small JSON documents, or one file's bytes; cap what a client buffers. */
const MAX_ANSWER_BYTES = 1024 * 1024 * 1024

async function call (socketPath: string, method: string, path: string, body: unknown, options: AbortOptions = {}): Promise<{ status: number, bytes: Buffer }> {
  throwIfAborted(options)
  return await new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const req = request({
      socketPath,
      method,
      path,
      headers: payload != null ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      ...(options.signal != null ? { signal: options.signal } : {})
    }, (response) => {
      const parts: Buffer[] = []
      let size = 0
      response.on('data', (part: Buffer) => {
        size += part.length
        if (size > MAX_ANSWER_BYTES) {
          req.destroy(new DaemonRequestError(response.statusCode ?? 0, 'AnswerTooLarge', `${method} ${path}: answer over ${MAX_ANSWER_BYTES} bytes`))
          return
        }
        parts.push(part)
      })
      response.once('end', () => { resolve({ status: response.statusCode ?? 0, bytes: Buffer.concat(parts) }) })
      response.once('error', reject)
    })
    req.once('error', (err: any) => {
      if (err?.code === 'ENOENT' || err?.code === 'ECONNREFUSED') {
        reject(new DaemonUnreachableError(`no daemon answers on ${socketPath} (${err.code}); start one with 'shoal daemon'`))
      } else if (err?.code === 'EACCES') {
        reject(new DaemonUnreachableError(`permission denied opening ${socketPath}: the daemon's API is for root only`))
      } else {
        reject(err)
      }
    })
    req.end(payload)
  })
}

async function callJson<T> (socketPath: string, method: string, path: string, body?: unknown, options?: AbortOptions): Promise<T> {
  const { status, bytes } = await call(socketPath, method, path, body, options)
  let value: any
  try {
    value = bytes.length === 0 ? undefined : JSON.parse(bytes.toString('utf8'))
  } catch {
    throw new DaemonRequestError(status, 'BadAnswer', `${method} ${path}: answer ${status} is not JSON: ${bytes.subarray(0, 200).toString('utf8')}`)
  }
  if (status >= 400) throw new DaemonRequestError(status, String(value?.error ?? 'Error'), `${String(value?.error ?? 'Error')}: ${String(value?.message ?? `status ${status}`)}`)
  return value as T
}

export function daemonClient (socketPath: string): DaemonClient {
  return {
    socketPath,
    status: async (options) => await callJson(socketPath, 'GET', '/v1/status', undefined, options),
    preheat: async (image, options) => await callJson(socketPath, 'POST', '/v1/preheat', { image }, options),
    mounts: async (options) => await callJson(socketPath, 'GET', '/v1/mounts', undefined, options),
    mount: async (image, mountpoint, options = {}) => await callJson(socketPath, 'POST', '/v1/mounts', { image, mountpoint, ...(options.mode != null ? { mode: options.mode } : {}) }, options),
    unmount: async (idOrMountpoint, options) => {
      await callJson(socketPath, 'DELETE', `/v1/mounts?mountpoint=${encodeURIComponent(idOrMountpoint)}`, undefined, options)
    },
    readFile: async (image, path, options) => {
      const query = new URLSearchParams({ image, path }).toString()
      const { status, bytes } = await call(socketPath, 'GET', `/v1/file?${query}`, undefined, options)
      if (status >= 400) {
        let value: any
        try { value = JSON.parse(bytes.toString('utf8')) } catch {}
        throw new DaemonRequestError(status, String(value?.error ?? 'Error'), `${String(value?.error ?? 'Error')}: ${String(value?.message ?? `status ${status}`)}`)
      }
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
    }
  }
}
