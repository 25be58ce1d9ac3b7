import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ChunkDigestMismatchError, throwIfAborted, AbortError } from '../src/index.js'

test('ChunkDigestMismatchError names the blob, chunk and both digests', () => {
  const err = new ChunkDigestMismatchError('ab12', 7, 'sha256:aa', 'sha256:bb', 'peer Qm1')
  assert.equal(err.name, 'ChunkDigestMismatchError')
  assert.equal(err.code, 'ERR_CHUNK_DIGEST_MISMATCH')
  assert.match(err.message, /chunk 7 of blob ab12 from peer Qm1: digest sha256:bb, expected sha256:aa/)
})

test('throwIfAborted throws only once the signal fired', () => {
  const controller = new AbortController()
  throwIfAborted({ signal: controller.signal })
  controller.abort()
  assert.throws(() => throwIfAborted({ signal: controller.signal }), AbortError)
})
