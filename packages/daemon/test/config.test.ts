import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DaemonConfigError, parseDaemonConfig, parseLoopbackAddress } from '../src/index.js'

test('a config file takes every daemon setting and refuses unknown keys and wrong types, naming the file', () => {
  const config = parseDaemonConfig({
    stateDir: '/var/lib/shoal', apiSocket: '/run/shoal/api.sock', listen: ['/ip4/0.0.0.0/tcp/4001'],
    bootstrap: ['/ip4/10.0.0.5/tcp/4001/p2p/12D3KooWabc'], seed: true, metrics: '127.0.0.1:9464',
    swarmKey: '/etc/shoal/swarm.key', insecureRegistries: ['reg.lan:5000'], cacheMaxBytes: 1024,
    mountMode: 'fuse', allow: ['/ip4/127.0.0.1'], providerTimeout: 50, bitmapTimeout: 500
  }, 'shoal.json')
  assert.equal(config.seed, true)
  assert.deepEqual(config.listen, ['/ip4/0.0.0.0/tcp/4001'])
  const refused: Array<[unknown, RegExp]> = [
    [[], /shoal.json: expected a JSON object, got an array/],
    [{ sead: true }, /unknown key 'sead'/],
    [{ seed: 'yes' }, /'seed' must be true or false/],
    [{ listen: '/ip4/0.0.0.0/tcp/1' }, /'listen' must be an array/],
    [{ cacheMaxBytes: -1 }, /'cacheMaxBytes' must be a non-negative integer/],
    [{ mountMode: 'nfs' }, /'mountMode' must be "fuse" or "erofs"/],
    [{ testServeFault: 'lie' }, /'testServeFault' must be one of corrupt, truncate, wrong-index/],
    [{ stateDir: '' }, /'stateDir' must be a non-empty string/]
  ]
  for (const [value, message] of refused) {
    assert.throws(() => parseDaemonConfig(value, 'shoal.json'), (err: any) => err instanceof DaemonConfigError && message.test(err.message) && err.message.startsWith('shoal.json'))
  }
})

test('metrics are served on loopback addresses only', () => {
  assert.deepEqual(parseLoopbackAddress('127.0.0.1:9464', 'metrics'), { host: '127.0.0.1', port: 9464 })
  assert.deepEqual(parseLoopbackAddress('[::1]:0', 'metrics'), { host: '::1', port: 0 })
  assert.deepEqual(parseLoopbackAddress('localhost:80', 'metrics'), { host: 'localhost', port: 80 })
  assert.throws(() => parseLoopbackAddress('0.0.0.0:9464', 'metrics'), /'0.0.0.0' is not a loopback address/)
  assert.throws(() => parseLoopbackAddress('10.1.2.3:9464', 'metrics'), /not a loopback address/)
  assert.throws(() => parseLoopbackAddress('127.0.0.1', 'metrics'), /expected HOST:PORT/)
  assert.throws(() => parseLoopbackAddress('127.0.0.1:70000', 'metrics'), /above 65535/)
})
