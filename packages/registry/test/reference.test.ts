import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  InvalidReferenceError, MEDIA_TYPE_OCI_MANIFEST, apiHost, findCredentials, formatImageReference, isInsecureRegistry,
  loadCredentials, parseImageReference, parseWwwAuthenticate, selectPlatform
} from '../src/index.js'

const DIGEST = `sha256:${'ab'.repeat(32)}`

test('references: host, port, path, tag, digest, Docker Hub defaults', () => {
  assert.deepEqual(parseImageReference('docker://127.0.0.1:5000/team/app:1.0'), { registry: '127.0.0.1:5000', repository: 'team/app', tag: '1.0' })
  assert.deepEqual(parseImageReference(`localhost/app@${DIGEST}`), { registry: 'localhost', repository: 'app', digest: DIGEST })
  assert.deepEqual(parseImageReference(`reg.example.com/a/b/c:t@${DIGEST}`), { registry: 'reg.example.com', repository: 'a/b/c', tag: 't', digest: DIGEST })
  assert.deepEqual(parseImageReference('busybox'), { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' })
  assert.deepEqual(parseImageReference('user/app:2'), { registry: 'docker.io', repository: 'user/app', tag: '2' })
  assert.deepEqual(parseImageReference('[::1]:5000/app'), { registry: '[::1]:5000', repository: 'app', tag: 'latest' })
  assert.equal(formatImageReference(parseImageReference(`docker://h:1/a:b@${DIGEST}`)), `h:1/a:b@${DIGEST}`)
  assert.equal(apiHost('docker.io'), 'registry-1.docker.io')
})

test('bad references are InvalidReferenceError naming the part', () => {
  assert.throws(() => parseImageReference('docker://'), InvalidReferenceError)
  assert.throws(() => parseImageReference('h:5000/App:1'), /repository path component "App"/)
  assert.throws(() => parseImageReference('h:5000/app:bad/tag'), InvalidReferenceError)
  assert.throws(() => parseImageReference('h:5000/app@sha256:1234'), /not 64 lower-case hex/)
  assert.throws(() => parseImageReference(`h:5000/app@md5:${'a'.repeat(32)}`), /unsupported digest algorithm "md5"/)
  assert.throws(() => parseImageReference(`h/${'a'.repeat(300)}`), /longer than 255/)
})

test('plain HTTP for loopback and listed hosts only', () => {
  assert.equal(isInsecureRegistry('127.0.0.1:5000'), true)
  assert.equal(isInsecureRegistry('127.9.8.7'), true)
  assert.equal(isInsecureRegistry('localhost:5000'), true)
  assert.equal(isInsecureRegistry('[::1]:5000'), true)
  assert.equal(isInsecureRegistry('10.0.0.1:5000'), false)
  assert.equal(isInsecureRegistry('128.0.0.1'), false)
  assert.equal(isInsecureRegistry('reg.lan:5000', ['reg.lan']), true)
  assert.equal(isInsecureRegistry('reg.lan:5000', ['reg.lan:5001']), false)
})

test('WWW-Authenticate: bearer with quoted params, basic, and both at once', () => {
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } }
  ])
  assert.deepEqual(parseWwwAuthenticate('Basic realm="r", Bearer realm="https://a/t",scope="repository:a:pull,push"'), [
    { scheme: 'basic', params: { realm: 'r' } },
    { scheme: 'bearer', params: { realm: 'https://a/t', scope: 'repository:a:pull,push' } }
  ])
  assert.deepEqual(parseWwwAuthenticate(''), [])
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="unterminated'), [{ scheme: 'bearer', params: { realm: 'unterminated' } }])
})

test('credentials: base64 auth or username/password, under a host or URL key; REGISTRY_AUTH_FILE first', async () => {
  assert.deepEqual(findCredentials({ 'https://reg:5000': { auth: Buffer.from('u:p:with:colons').toString('base64') } }, 'reg:5000'), { username: 'u', password: 'p:with:colons' })
  assert.deepEqual(findCredentials({ 'https://index.docker.io/v1/': { username: 'd', password: 'x' } }, 'docker.io'), { username: 'd', password: 'x' })
  assert.equal(findCredentials({ other: { auth: 'eDp5' } }, 'reg:5000'), undefined)
  assert.equal(findCredentials({ 'reg:5000': { auth: 'bm9jb2xvbg==' } }, 'reg:5000'), undefined)

  const dir = await mkdtemp(join(tmpdir(), 'shoal-creds-'))
  try {
    await mkdir(join(dir, '.docker'))
    await writeFile(join(dir, '.docker', 'config.json'), JSON.stringify({ auths: { 'reg:5000': { username: 'docker', password: '1' } } }))
    await writeFile(join(dir, 'auth.json'), JSON.stringify({ auths: { 'reg:5000': { username: 'skopeo', password: '2' } } }))
    assert.equal((await loadCredentials('reg:5000', { home: dir, env: {} }))?.username, 'docker')
    assert.equal((await loadCredentials('reg:5000', { home: dir, env: { REGISTRY_AUTH_FILE: join(dir, 'auth.json') } }))?.username, 'skopeo')
    assert.equal(await loadCredentials('other:1', { home: dir, env: {} }), undefined)
    await writeFile(join(dir, 'broken.json'), '{not json')
    assert.equal((await loadCredentials('reg:5000', { home: dir, env: { REGISTRY_AUTH_FILE: join(dir, 'broken.json') } }))?.username, 'docker')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('platform selection: exact match, variant rules, attestations skipped', () => {
  const entry = (digest: string, architecture: string, variant?: string, mediaType = MEDIA_TYPE_OCI_MANIFEST) =>
    ({ mediaType, digest, size: 1, platform: { os: 'linux', architecture, ...(variant != null ? { variant } : {}) } })
  const index = {
    schemaVersion: 2 as const,
    manifests: [
      entry('sha256:a1', 'arm', 'v7'), entry('sha256:a2', 'arm64', 'v8'), entry('sha256:a3', 'amd64'),
      { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: 'sha256:att', size: 1, platform: { os: 'unknown', architecture: 'unknown' } }
    ]
  }
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'amd64' })?.digest, 'sha256:a3')
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm64' })?.digest, 'sha256:a2')
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' })?.digest, 'sha256:a1')
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v6' }), undefined)
  assert.equal(selectPlatform(index, { os: 'windows', architecture: 'amd64' }), undefined)
})
