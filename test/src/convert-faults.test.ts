/**
 * `shoal convert` on bad input and failing registries: each gives a named error or a retry, and
 * no destination ever holds a manifest that names a missing blob (or any manifest, on failure).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request as httpRequest } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { once } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { spawn } from 'node:child_process'
import { registry } from '@shoal/registry'
import { startRegistry } from '@shoal/registry/test/registry-server'
import type { RunningRegistry } from '@shoal/registry/test/registry-server'
import { ociLayout } from '@shoal/oci-layout'
import { shoal, withTempDir } from './helpers.js'
import { buildBusyboxImage, buildLayerBytesImage, handTar, pushWithSkopeo, run } from './oci-images.js'

const TIMEOUT = { timeout: 180_000 }

async function withRegistry<T> (fn: (server: RunningRegistry) => Promise<T>): Promise<T> {
  const server = await startRegistry()
  try {
    return await fn(server)
  } finally {
    await server.stop()
  }
}

async function noTags (layout: string): Promise<void> {
  const tags = await ociLayout({ path: layout }).tags().catch(() => [])
  assert.deepEqual(tags, [], 'no manifest was written')
}

const badLayers: Array<{ name: string, layer: () => Buffer, error: RegExp }> = [
  {
    name: 'a corrupt gzip layer',
    layer: () => {
      const good = gzipSync(handTar([{ name: 'a', body: 'x'.repeat(100_000) }, { name: 'b', body: 'hello' }]))
      const bad = Buffer.from(good)
      for (let i = 40; i < 80; i++) bad[i] ^= 0x5a
      return bad
    },
    error: /^shoal: TarFormatError: layer gzip stream does not decompress/m
  },
  {
    name: 'a tar entry named ../escape',
    layer: () => gzipSync(handTar([{ name: 'ok', body: 'fine' }, { name: '../escape', body: 'out' }])),
    error: /^shoal: UnsafeLayerPathError: unsafe path in layer: "\.\.\/escape"/m
  },
  {
    name: 'an absolute path that climbs out (/../../etc/x)',
    layer: () => gzipSync(handTar([{ name: '/../../etc/x', body: 'out' }])),
    error: /^shoal: UnsafeLayerPathError: unsafe path in layer: "\/\.\.\/\.\.\/etc\/x"/m
  },
  {
    name: 'a hard link whose target escapes',
    layer: () => gzipSync(handTar([{ name: 'link', type: 'hardlink', linkname: '../../etc/passwd' }])),
    error: /^shoal: UnsafeLayerPathError: unsafe path in layer/m
  }
]

for (const bad of badLayers) {
  test(`${bad.name}: a named error, and no manifest in the registry or the layout`, TIMEOUT, async () => {
    await withTempDir(async dir => {
      await withRegistry(async server => {
        const layout = join(dir, 'src')
        await buildLayerBytesImage(layout, 'bad', bad.layer(), dir)
        const toLayout = await shoal(['convert', `oci:${layout}:bad`, `oci:${join(dir, 'out')}:bad-nydus`])
        assert.equal(toLayout.code, 1)
        assert.match(toLayout.stderr, bad.error)
        await noTags(join(dir, 'out'))

        await pushWithSkopeo(layout, 'bad', `docker://${server.registry}/bad:1`)
        const toRegistry = await shoal(['convert', `docker://${server.registry}/bad:1`, `docker://${server.registry}/bad:1-nydus`])
        assert.equal(toRegistry.code, 1)
        assert.match(toRegistry.stderr, bad.error)
        assert.equal(await registry().headManifest(`docker://${server.registry}/bad:1-nydus`), undefined)
      })
    })
  })
}

test('a symlink pointing outside is kept as a link, and unpack writes nothing through it', TIMEOUT, async () => {
  await withTempDir(async dir => {
    const layout = join(dir, 'src')
    const outside = join(dir, 'outside')
    await run('mkdir', [outside])
    await buildLayerBytesImage(layout, 'v1', gzipSync(handTar([
      { name: 'evil', type: 'symlink', linkname: outside },
      { name: 'evil/planted', body: 'should stay inside' }
    ])), dir)
    const converted = await shoal(['convert', `oci:${layout}:v1`, `oci:${join(dir, 'out')}:v1-nydus`])
    assert.equal(converted.code, 0, converted.stderr)
    const unpacked = await shoal(['unpack', `oci:${join(dir, 'out')}:v1-nydus`, join(dir, 'rootfs')])
    assert.equal(unpacked.code, 0, unpacked.stderr)
    assert.equal((await run('ls', ['-A', outside])).trim(), '', 'nothing was written outside')
  })
})

test('a layer blob whose bytes lie about their digest: named error, no manifest', TIMEOUT, async () => {
  await withTempDir(async dir => {
    const layout = join(dir, 'src')
    const tar = handTar([{ name: 'f', body: 'true bytes' }])
    const { layerDigest } = await buildLayerBytesImage(layout, 'v1', tar, dir, 'application/vnd.oci.image.layer.v1.tar')
    const path = join(layout, 'blobs', 'sha256', layerDigest.slice(7))
    // Same length, still a valid tar, other bytes: only the digest check at the end of the stream catches it.
    await writeFile(path, handTar([{ name: 'f', body: 'lies bytes' }]))
    const result = await shoal(['convert', `oci:${layout}:v1`, `oci:${join(dir, 'out')}:v1-nydus`])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^shoal: LayoutDigestMismatchError: .* has digest sha256:[0-9a-f]{64}, expected sha256:/m)
    await noTags(join(dir, 'out'))
  })
})

test('a manifest whose bytes do not match the digest index.json gives: named error', TIMEOUT, async () => {
  await withTempDir(async dir => {
    const layout = join(dir, 'src')
    await buildLayerBytesImage(layout, 'v1', gzipSync(handTar([{ name: 'f', body: 'x' }])), dir)
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'))
    const manifestPath = join(layout, 'blobs', 'sha256', index.manifests[0].digest.slice(7))
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'))
    manifest.annotations = { tampered: 'yes' }
    await writeFile(manifestPath, JSON.stringify(manifest))
    const result = await shoal(['convert', `oci:${layout}:v1`, `oci:${join(dir, 'out')}:v1-nydus`])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^shoal: LayoutDigestMismatchError: /m)
  })
})

/** A registry in front of the real one that answers a manifest with a lying Docker-Content-Digest. */
test('a registry manifest whose digest lies: DigestMismatchError, nothing converted', TIMEOUT, async () => {
  await withTempDir(async dir => {
    await withRegistry(async server => {
      const layout = join(dir, 'src')
      await buildBusyboxImage(layout, 'v1', dir)
      await pushWithSkopeo(layout, 'v1', `docker://${server.registry}/img:v1`)
      await withProxy(server, (req, forward) => {
        if (req.method === 'GET' && req.url?.includes('/manifests/v1') === true) {
          forward({ rewriteDigest: `sha256:${'0'.repeat(64)}` })
        } else forward()
      }, async proxy => {
        const result = await shoal(['convert', `docker://${proxy}/img:v1`, `docker://${proxy}/img:v1-nydus`])
        assert.equal(result.code, 1)
        assert.match(result.stderr, /^shoal: DigestMismatchError: content from http:\/\/127\.0\.0\.1:\d+\/v2\/img\/manifests\/v1 has digest sha256:[0-9a-f]{64}, expected sha256:0{64}/m)
      })
      assert.equal(await registry().headManifest(`docker://${server.registry}/img:v1-nydus`), undefined)
    })
  })
})

test('a registry that answers 500 once to each kind of request: retried, and the image converts', TIMEOUT, async () => {
  await withTempDir(async dir => {
    await withRegistry(async server => {
      const layout = join(dir, 'src')
      await buildBusyboxImage(layout, 'v1', dir)
      await pushWithSkopeo(layout, 'v1', `docker://${server.registry}/img:v1`)
      const failed = new Set<string>()
      await withProxy(server, (req, forward, fail) => {
        const kind = `${req.method ?? ''} ${(req.url ?? '').replace(/[0-9a-f]{64}|uploads\/[^?]*/g, 'X').split('?')[0]}`
        if (!failed.has(kind)) { failed.add(kind); fail(500) } else forward()
      }, async proxy => {
        const result = await shoal(['convert', `docker://${proxy}/img:v1`, `docker://${proxy}/img:v1-nydus`, '--json'])
        assert.equal(result.code, 0, result.stderr)
        assert.ok([...failed].some(k => k.startsWith('PUT') && k.includes('/manifests/')), `a manifest PUT failed once: ${[...failed].join(', ')}`)
        assert.ok([...failed].some(k => k.startsWith('GET') && k.includes('/blobs/')), 'a blob GET failed once')
      })
      const checked = await shoal(['check', `docker://${server.registry}/img:v1-nydus`])
      assert.equal(checked.code, 0, checked.stderr)
    })
  })
})

test('the registry dies mid-upload: a named error after retries, and after a restart no manifest names a missing blob', TIMEOUT, async () => {
  await withTempDir(async dir => {
    await withRegistry(async server => {
      const layout = join(dir, 'src')
      await buildBusyboxImage(layout, 'v1', dir)
      await pushWithSkopeo(layout, 'v1', `docker://${server.registry}/img:v1`)
      const pid = await registryPid(server.port)
      let killed = false
      let restarted: ReturnType<typeof spawn> | undefined
      try {
        await withProxy(server, (req, forward) => {
          // The first blob body on its way up: the registry process is killed before it lands.
          if (!killed && (req.method === 'PUT' || req.method === 'PATCH') && req.url?.includes('/blobs/uploads/') === true) {
            killed = true
            process.kill(pid, 'SIGKILL')
          }
          forward()
        }, async proxy => {
          const result = await shoal(['convert', `docker://${proxy}/img:v1`, `docker://${proxy}/img:v1-nydus`], { timeoutMs: 120_000 })
          assert.equal(killed, true)
          assert.equal(result.code, 1)
          assert.match(result.stderr, /^shoal: RetriesExhaustedError: .* failed after \d+ attempts/m)
        })
        // The same storage, served again: the tag must not exist.
        restarted = spawn('docker-registry', ['serve', join(server.dir, 'config.yml')], { stdio: 'ignore' })
        await waitForRegistry(server.url)
        assert.equal(await registry().headManifest(`docker://${server.registry}/img:v1-nydus`), undefined)
        assert.notEqual(await registry().headManifest(`docker://${server.registry}/img:v1`), undefined)
      } finally {
        if (restarted != null && restarted.exitCode == null) {
          restarted.kill('SIGTERM')
          await once(restarted, 'exit')
        }
      }
    })
  })
})

async function registryPid (port: number): Promise<number> {
  const out = await run('ss', ['-ltnpH', `sport = :${port}`])
  const match = /pid=(\d+)/.exec(out)
  if (match == null) throw new Error(`no process listens on ${port}: ${out}`)
  return Number(match[1])
}

async function waitForRegistry (url: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) })
      await response.body?.cancel()
      if (response.status === 200) return
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`registry at ${url} did not come back`)
}

type Forward = (options?: { rewriteDigest?: string }) => void
type Handler = (req: IncomingMessage, forward: Forward, fail: (status: number) => void) => void

/** An HTTP proxy on loopback in front of the registry, letting a test fail or alter requests. */
async function withProxy (server: RunningRegistry, handle: Handler, fn: (proxy: string) => Promise<void>): Promise<void> {
  const proxy: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const forward: Forward = (options = {}) => {
      const upstream = httpRequest({ host: '127.0.0.1', port: server.port, method: req.method, path: req.url, headers: req.headers }, up => {
        const headers = { ...up.headers }
        if (options.rewriteDigest != null) headers['docker-content-digest'] = options.rewriteDigest
        // Upload Locations point at the registry itself: send them back through the proxy.
        const address = proxy.address()
        if (typeof headers.location === 'string' && address != null && typeof address !== 'string') {
          headers.location = headers.location.replace(`127.0.0.1:${server.port}`, `127.0.0.1:${address.port}`)
        }
        res.writeHead(up.statusCode ?? 502, headers)
        up.pipe(res)
      })
      upstream.on('error', () => { res.destroy() })
      req.pipe(upstream)
    }
    const fail = (status: number): void => {
      req.resume()
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'injected by the test' }] }))
    }
    handle(req, forward, fail)
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  const address = proxy.address()
  if (address == null || typeof address === 'string') throw new Error('no proxy address')
  try {
    await fn(`127.0.0.1:${address.port}`)
  } finally {
    proxy.closeAllConnections()
    proxy.close()
  }
}
