/**
 * Faults a real registry will not produce on demand, from a tiny HTTP server of our own on loopback:
 * 5xx then success, a connection cut mid-body, bytes that lie about their digest, a bearer-token
 * flow with expiry, a redirect to another host, Range ignored or answered wrongly.
 */
import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AbortError } from '@shoal/interface'
import {
  DigestMismatchError, MEDIA_TYPE_OCI_MANIFEST, RegistryAuthError, RegistryError, RegistryProtocolError,
  RetriesExhaustedError, registry
} from '../src/index.js'

const fastRetry = { attempts: 3, initialDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 5000 }

function sha256 (bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

interface SeenRequest {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
}

interface Fake {
  /** `host:port`, as a reference's registry. */
  registry: string
  origin: string
  requests: SeenRequest[]
  close(): Promise<void>
}

const fakes: Fake[] = []
after(async () => { await Promise.all(fakes.map(async f => await f.close())) })

async function fake (handler: (req: SeenRequest, res: ServerResponse, raw: IncomingMessage) => void, host = '127.0.0.1'): Promise<Fake> {
  const requests: SeenRequest[] = []
  const server = createServer((raw, res) => {
    const parts: Buffer[] = []
    raw.on('data', (chunk: Buffer) => parts.push(chunk))
    raw.on('end', () => {
      const seen = { method: raw.method ?? '', url: raw.url ?? '', headers: raw.headers, body: Buffer.concat(parts) }
      requests.push(seen)
      try {
        handler(seen, res, raw)
      } catch (err) {
        res.writeHead(599).end(String(err))
      }
    })
  })
  server.listen(0, host)
  await once(server, 'listening')
  const address = server.address()
  if (address == null || typeof address === 'string') throw new Error('no address')
  const result: Fake = {
    registry: `${host}:${address.port}`,
    origin: `http://${host}:${address.port}`,
    requests,
    close: async () => {
      server.closeAllConnections()
      server.close()
    }
  }
  fakes.push(result)
  return result
}

function manifestBytes (): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(Buffer.from('{}')), size: 2 },
    layers: []
  }))
}

function sendManifest (res: ServerResponse, bytes: Buffer, digestHeader = sha256(bytes)): void {
  res.writeHead(200, { 'content-type': MEDIA_TYPE_OCI_MANIFEST, 'content-length': bytes.byteLength, 'docker-content-digest': digestHeader })
  res.end(bytes)
}

/** Serves `data` honouring a `bytes=a-b` or `bytes=a-` Range, as a registry does. */
function sendRange (req: SeenRequest, res: ServerResponse, data: Buffer): void {
  const match = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''))
  if (match == null) {
    res.writeHead(200, { 'content-length': data.byteLength }).end(data)
    return
  }
  const start = Number(match[1])
  const end = match[2] === '' ? data.byteLength - 1 : Math.min(Number(match[2]), data.byteLength - 1)
  res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${data.byteLength}` })
  res.end(data.subarray(start, end + 1))
}

describe('retries', () => {
  test('a 500 then success: the second attempt returns the manifest', async () => {
    const bytes = manifestBytes()
    const server = await fake((req, res) => {
      if (server.requests.length === 1) {
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNKNOWN","message":"boom"}]}')
        return
      }
      sendManifest(res, bytes)
    })
    const got = await registry({ retry: fastRetry, useAuthFiles: false }).getManifest(`${server.registry}/a/b:latest`)
    assert.deepEqual(Buffer.from(got.bytes), bytes)
    assert.equal(server.requests.length, 2)
  })

  test('a registry that keeps failing is tried exactly `attempts` times, then RetriesExhaustedError with the last status', async () => {
    const server = await fake((req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"down"}]}')
    })
    const started = Date.now()
    await assert.rejects(registry({ retry: fastRetry, useAuthFiles: false }).getManifest(`${server.registry}/a/b:latest`), (err: unknown) => {
      assert.ok(err instanceof RetriesExhaustedError, String(err))
      assert.equal(err.attempts, 3)
      assert.ok(err.cause instanceof RegistryError && err.cause.status === 503)
      assert.deepEqual(err.cause.errors, [{ code: 'UNAVAILABLE', message: 'down' }])
      return true
    })
    assert.equal(server.requests.length, 3)
    assert.ok(Date.now() - started < 2000)
  })

  test('the time budget stops retries before the attempt budget does', async () => {
    const server = await fake((req, res) => { res.writeHead(502).end() })
    const client = registry({ retry: { attempts: 100, initialDelayMs: 40, maxDelayMs: 40, maxElapsedMs: 200 }, useAuthFiles: false })
    const started = Date.now()
    await assert.rejects(client.headBlob(`${server.registry}/a/b`, sha256(Buffer.from('x'))), RetriesExhaustedError)
    assert.ok(server.requests.length >= 2 && server.requests.length <= 7, `${server.requests.length} requests`)
    assert.ok(Date.now() - started < 1000)
  })

  test('429 with Retry-After is retried; 400 is not retried and carries the registry\'s errors', async () => {
    const bytes = manifestBytes()
    const limited = await fake((req, res) => {
      if (limited.requests.length === 1) { res.writeHead(429, { 'retry-after': '0' }).end(); return }
      sendManifest(res, bytes)
    })
    await registry({ retry: fastRetry, useAuthFiles: false }).getManifest(`${limited.registry}/a/b:1`)
    assert.equal(limited.requests.length, 2)

    const bad = await fake((req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{"x":1}}]}')
    })
    await assert.rejects(registry({ retry: fastRetry, useAuthFiles: false }).putManifest(`${bad.registry}/a/b:1`, bytes), (err: unknown) =>
      err instanceof RegistryError && err.status === 400 && err.errors[0]?.code === 'MANIFEST_INVALID' && /MANIFEST_INVALID \(manifest invalid\)/.test(err.message))
    assert.equal(bad.requests.length, 1)
  })

  test('an aborted signal stops a call up front and during the backoff', async () => {
    const server = await fake((req, res) => { res.writeHead(503).end() })
    const client = registry({ retry: { attempts: 10, initialDelayMs: 5000, maxDelayMs: 5000, maxElapsedMs: 60_000 }, useAuthFiles: false })
    await assert.rejects(client.getManifest(`${server.registry}/a/b:1`, { signal: AbortSignal.abort() }), AbortError)
    assert.equal(server.requests.length, 0)
    const started = Date.now()
    await assert.rejects(client.getManifest(`${server.registry}/a/b:1`, { signal: AbortSignal.timeout(100) }), AbortError)
    assert.equal(server.requests.length, 1)
    assert.ok(Date.now() - started < 2000)
  })
})

describe('bodies cut or lying', () => {
  const data = randomBytes(200_000)
  const digest = sha256(data)

  test('a connection reset mid-body resumes with Range from the bytes already received', async () => {
    const server = await fake((req, res) => {
      if (server.requests.length === 1) {
        res.writeHead(200, { 'content-length': data.byteLength })
        res.write(data.subarray(0, 70_000), () => { setTimeout(() => res.socket?.destroy(), 20) })
        return
      }
      sendRange(req, res, data)
    })
    const dir = await mkdtemp(join(tmpdir(), 'shoal-faults-'))
    try {
      const target = join(dir, 'blob')
      const got = await registry({ retry: fastRetry, useAuthFiles: false }).getBlob(`${server.registry}/a/b`, digest, target)
      assert.equal(got.size, data.byteLength)
      assert.deepEqual(await readFile(target), data)
      assert.equal(server.requests.length, 2)
      const resumedFrom = Number(/^bytes=(\d+)-$/.exec(String(server.requests[1]?.headers.range))?.[1])
      assert.ok(resumedFrom > 0 && resumedFrom <= 70_000, `resumed from ${resumedFrom}`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('after a reset, a registry that ignores Range still yields the right bytes (the overlap is skipped)', async () => {
    const server = await fake((req, res) => {
      if (server.requests.length === 1) {
        res.writeHead(200, { 'content-length': data.byteLength })
        res.write(data.subarray(0, 50_000), () => { setTimeout(() => res.socket?.destroy(), 20) })
        return
      }
      res.writeHead(200, { 'content-length': data.byteLength }).end(data)
    })
    const bytes = await registry({ retry: fastRetry, useAuthFiles: false }).getBlobBytes(`${server.registry}/a/b`, digest)
    assert.deepEqual(Buffer.from(bytes), data)
    const chunks: Buffer[] = []
    const { Writable } = await import('node:stream')
    const sink = new Writable({ write (chunk: Buffer, _e, cb) { chunks.push(chunk); cb() } })
    const before = server.requests.length
    await registry({ retry: fastRetry, useAuthFiles: false }).getBlob(`${server.registry}/a/b`, digest, sink)
    assert.deepEqual(Buffer.concat(chunks), data)
    assert.equal(server.requests.length, before + 1)
  })

  test('a blob whose bytes do not match its digest: DigestMismatchError with both digests and the URL, no file left', async () => {
    const other = randomBytes(1000)
    const server = await fake((req, res) => { res.writeHead(200, { 'content-length': other.byteLength }).end(other) })
    const client = registry({ retry: fastRetry, useAuthFiles: false })
    const dir = await mkdtemp(join(tmpdir(), 'shoal-faults-'))
    try {
      await assert.rejects(client.getBlob(`${server.registry}/a/b`, digest, join(dir, 'blob')), (err: unknown) => {
        assert.ok(err instanceof DigestMismatchError, String(err))
        assert.equal(err.expected, digest)
        assert.equal(err.actual, sha256(other))
        assert.equal(err.url, `${server.origin}/v2/a/b/blobs/${digest}`)
        return true
      })
      assert.deepEqual(await readdir(dir), [])
      await assert.rejects(client.getBlobBytes(`${server.registry}/a/b`, digest), DigestMismatchError)
      assert.equal(server.requests.length, 2)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('a manifest that is not what its digest (asked, or claimed by the registry) says is refused', async () => {
    const bytes = manifestBytes()
    const lie = sha256(Buffer.from('something else'))
    const server = await fake((req, res) => { sendManifest(res, bytes, lie) })
    const client = registry({ retry: fastRetry, useAuthFiles: false })
    await assert.rejects(client.getManifest(`${server.registry}/a/b:latest`), (err: unknown) =>
      err instanceof DigestMismatchError && err.expected === lie && err.actual === sha256(bytes))
    await assert.rejects(client.getManifest(`${server.registry}/a/b@${lie}`), DigestMismatchError)
  })

  test('a registry that ignores Range: readBlob takes the slice and hangs up', async () => {
    const server = await fake((req, res) => { res.writeHead(200, { 'content-length': data.byteLength }).end(data) })
    const got = await registry({ retry: fastRetry, useAuthFiles: false }).readBlob(`${server.registry}/a/b`, digest, 123_456, 789)
    assert.deepEqual(Buffer.from(got), data.subarray(123_456, 123_456 + 789))
    assert.equal(server.requests[0]?.headers.range, 'bytes=123456-124244')
    assert.equal(server.requests[0]?.headers['accept-encoding'], 'identity')
    await registry({ retry: fastRetry, useAuthFiles: false }).getBlobBytes(`${server.registry}/a/b`, digest)
    assert.equal(server.requests[1]?.headers['accept-encoding'], 'identity')
  })

  test('a 206 for the wrong range is a RegistryProtocolError', async () => {
    const server = await fake((req, res) => {
      res.writeHead(206, { 'content-length': 10, 'content-range': `bytes 0-9/${data.byteLength}` }).end(data.subarray(0, 10))
    })
    await assert.rejects(registry({ retry: fastRetry, useAuthFiles: false }).readBlob(`${server.registry}/a/b`, digest, 100, 10), RegistryProtocolError)
  })

  test('a reset in the middle of a Range read is retried', async () => {
    const server = await fake((req, res) => {
      if (server.requests.length === 1) {
        res.writeHead(206, { 'content-length': 100_000, 'content-range': `bytes 1000-100999/${data.byteLength}` })
        res.write(data.subarray(1000, 31_000), () => { setTimeout(() => res.socket?.destroy(), 20) })
        return
      }
      sendRange(req, res, data)
    })
    const got = await registry({ retry: fastRetry, useAuthFiles: false }).readBlob(`${server.registry}/a/b`, digest, 1000, 100_000)
    assert.deepEqual(Buffer.from(got), data.subarray(1000, 101_000))
    assert.equal(server.requests.length, 2)
  })
})

describe('bearer tokens', () => {
  test('challenge → token endpoint → retry with the token; cached; refreshed before it expires', async () => {
    const bytes = manifestBytes()
    const issued: string[] = []
    const server = await fake((req, res) => {
      if (req.url.startsWith('/token')) {
        if (req.headers.authorization !== 'Basic ' + Buffer.from('ci:s3cret').toString('base64')) { res.writeHead(401).end(); return }
        const token = `tok-${issued.length + 1}`
        issued.push(token)
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 60 }))
        return
      }
      const auth = req.headers.authorization ?? ''
      if (!auth.startsWith('Bearer ') || !issued.includes(auth.slice('Bearer '.length))) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="${server.origin}/token",service="fake-registry",scope="repository:team/app:pull"`,
          'content-type': 'application/json'
        }).end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
        return
      }
      sendManifest(res, bytes)
    })
    let clock = 1_000_000
    const client = registry({
      retry: fastRetry,
      useAuthFiles: false,
      credentials: { [server.registry]: { username: 'ci', password: 's3cret' } },
      now: () => clock
    })
    const ref = `${server.registry}/team/app:1`

    await client.getManifest(ref)
    assert.deepEqual(server.requests.map(r => `${r.method} ${r.url.split('?')[0] ?? ''} ${r.headers.authorization?.split(' ')[0] ?? '-'}`), [
      'GET /v2/team/app/manifests/1 -', 'GET /token Basic', 'GET /v2/team/app/manifests/1 Bearer'
    ])
    const tokenQuery = new URL(server.requests[1]?.url ?? '', server.origin).searchParams
    assert.equal(tokenQuery.get('service'), 'fake-registry')
    assert.deepEqual(tokenQuery.getAll('scope'), ['repository:team/app:pull'])
    assert.equal(server.requests[2]?.headers.authorization, 'Bearer tok-1')

    // Cached: the next call goes straight to the registry with the same token.
    await client.getManifest(ref)
    assert.equal(server.requests.length, 4)
    assert.equal(server.requests[3]?.headers.authorization, 'Bearer tok-1')

    // 55 s later the 60 s token is inside its refresh margin: a new one is fetched first, no 401.
    clock += 55_000
    await client.getManifest(ref)
    assert.deepEqual(server.requests.slice(4).map(r => `${r.url.split('?')[0] ?? ''} ${r.headers.authorization ?? '-'}`), [
      `/token Basic ${Buffer.from('ci:s3cret').toString('base64')}`, '/v2/team/app/manifests/1 Bearer tok-2'
    ])
    assert.deepEqual(issued, ['tok-1', 'tok-2'])
    assert.ok(server.requests.every(r => r.url.startsWith('/token') || !String(r.headers.authorization).startsWith('Basic')),
      'the password goes only to the token endpoint')
  })

  test('a token the registry keeps refusing ends in one RegistryAuthError, not a loop', async () => {
    const server = await fake((req, res) => {
      if (req.url.startsWith('/token')) {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"access_token":"useless","expires_in":300}')
        return
      }
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${server.origin}/token",service="s"` }).end()
    })
    await assert.rejects(registry({ retry: fastRetry, useAuthFiles: false }).getManifest(`${server.registry}/a/b:1`), (err: unknown) =>
      err instanceof RegistryAuthError && err.status === 401 && /anonymously/.test(err.message))
    assert.deepEqual(server.requests.map(r => r.url.split('?')[0]), ['/v2/a/b/manifests/1', '/token', '/v2/a/b/manifests/1'])
  })
})

describe('redirects', () => {
  test('a blob redirected to another host is fetched there without the Authorization header', async () => {
    const data = randomBytes(30_000)
    const digest = sha256(data)
    const storage = await fake((req, res) => { sendRange(req, res, data) }, '127.0.0.2')
    const basic = 'Basic ' + Buffer.from('ci:s3cret').toString('base64')
    const server = await fake((req, res) => {
      if (req.headers.authorization !== basic) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end()
        return
      }
      res.writeHead(307, { location: `${storage.origin}/bucket/blob?signature=abc` }).end()
    })
    const logged: string[] = []
    const client = registry({ retry: fastRetry, useAuthFiles: false, credentials: { [server.registry]: { username: 'ci', password: 's3cret' } }, log: line => logged.push(line) })
    assert.deepEqual(Buffer.from(await client.getBlobBytes(`${server.registry}/a/b`, digest)), data)
    assert.ok(logged.some(line => line.includes('redirect to')), logged.join('\n'))
    assert.ok(logged.every(line => !line.includes('signature=abc')), 'a presigned URL\'s signature is not logged')
    assert.deepEqual(Buffer.from(await client.readBlob(`${server.registry}/a/b`, digest, 100, 200)), data.subarray(100, 300))

    assert.equal(storage.requests.length, 2)
    assert.ok(storage.requests.every(r => r.headers.authorization == null), 'no Authorization reached the other host')
    assert.equal(storage.requests[0]?.url, '/bucket/blob?signature=abc')
    assert.equal(storage.requests[1]?.headers.range, 'bytes=100-299')
    assert.ok(server.requests.filter(r => r.headers.authorization === basic).length === 2)
  })
})

describe('chunked upload recovery', () => {
  test('a PATCH that landed but answered 500 is resumed from where the registry says it is', async () => {
    const data = randomBytes(10_000)
    let stored = Buffer.alloc(0)
    let patches = 0
    const server = await fake((req, res) => {
      const path = req.url.split('?')[0]
      if (req.method === 'HEAD') { res.writeHead(404).end(); return }
      if (req.method === 'POST') { res.writeHead(202, { location: '/v2/a/b/blobs/uploads/u1?_state=s0', range: '0-0' }).end(); return }
      if (req.method === 'GET' && path === '/v2/a/b/blobs/uploads/u1') {
        res.writeHead(204, { location: '/v2/a/b/blobs/uploads/u1?_state=s2', range: `0-${stored.byteLength - 1}` }).end()
        return
      }
      if (req.method === 'PATCH') {
        const range = /^(\d+)-(\d+)$/.exec(String(req.headers['content-range']))
        if (range == null || Number(range[1]) !== stored.byteLength) { res.writeHead(416).end(); return }
        stored = Buffer.concat([stored, req.body])
        patches++
        if (patches === 2) { res.writeHead(500).end(); return }
        res.writeHead(202, { location: `/v2/a/b/blobs/uploads/u1?_state=p${patches}`, range: `0-${stored.byteLength - 1}` }).end()
        return
      }
      if (req.method === 'PUT') {
        const digest = new URL(req.url, server.origin).searchParams.get('digest')
        if (digest !== sha256(stored)) { res.writeHead(400).end(); return }
        res.writeHead(201, { 'docker-content-digest': digest, location: `/v2/a/b/blobs/${digest}` }).end()
        return
      }
      res.writeHead(405).end()
    })
    const result = await registry({ retry: fastRetry, useAuthFiles: false }).pushBlob(`${server.registry}/a/b`, data, { chunkSize: 3000 })
    assert.deepEqual(result, { digest: sha256(data), size: 10_000, how: 'chunked' })
    assert.deepEqual(stored, data)
    assert.deepEqual(server.requests.filter(r => r.method === 'PATCH').map(r => r.headers['content-range']), ['0-2999', '3000-5999', '6000-8999', '9000-9999'])
    assert.equal(server.requests.filter(r => r.method === 'GET').length, 1)
  })
})
