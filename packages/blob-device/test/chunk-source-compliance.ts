/**
 * The ChunkSource contract, as a suite every source runs (directory, registry, swarm):
 *   chunkSourceCompliance('registry', { create: async ({ blobDir, image }) => ({ source, close }) })
 * `create` gets a directory of real blob files and their image, and returns a source that serves
 * exactly those blobs (it may copy them elsewhere: a registry, a peer). A source that says
 * `delivers: 'uncompressed'` (a peer's cache) is held to the uncompressed size and digest of
 * each chunk instead of its stored form.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { ChunkRef, ChunkSource } from '@shoal/interface'
import { chunkRefOf, decodeChunkRef, type RafsChunk, type RafsImage } from '@shoal/rafs'
import { buildTestImage, testBytes, type TestImage } from './images.js'

export interface ChunkSourceFactory {
  create: (fixture: { blobDir: string, image: RafsImage }) => Promise<{ source: ChunkSource, close?: () => Promise<void> }>
}

function refsOf (image: RafsImage, chunks: RafsChunk[]): ChunkRef[] {
  return chunks.map(c => chunkRefOf(c, image.blobs[c.blobIndex]))
}

/** The size a source's answer must have: stored, or uncompressed when the source says so. */
function deliveredSize (source: ChunkSource, ref: ChunkRef): number {
  return source.delivers === 'uncompressed' ? ref.uncompressedSize : ref.compressedSize
}

/** Decodes and verifies an answer as the source delivers it (the contract in @shoal/interface). */
function decodeAnswer (source: ChunkSource, bytes: Uint8Array, ref: ChunkRef): Uint8Array {
  const asDelivered = source.delivers === 'uncompressed' ? { ...ref, compressed: false, compressedSize: ref.uncompressedSize } : ref
  return decodeChunkRef(bytes, asDelivered)
}

export function chunkSourceCompliance (name: string, factory: ChunkSourceFactory): void {
  describe(`chunk source compliance: ${name}`, () => {
    let fixture: TestImage
    let source: ChunkSource
    let close: (() => Promise<void>) | undefined
    let all: ChunkRef[]

    before(async () => {
      fixture = await buildTestImage({
        '/big': testBytes(10 * 4096 + 123, 1, true),
        '/small': testBytes(700, 2),
        '/raw': testBytes(3 * 4096, 3)
      })
      const made = await factory.create({ blobDir: fixture.blobDir, image: fixture.image })
      source = made.source
      close = made.close
      const chunks = ['/big', '/small', '/raw'].flatMap(p => fixture.node(p).chunks ?? [])
      all = refsOf(fixture.image, chunks)
    })

    after(async () => {
      await close?.()
      await fixture?.cleanup()
    })

    test('has a name', () => {
      assert.equal(typeof source.name, 'string')
      assert.ok(source.name.length > 0)
    })

    test('says what it delivers: stored (the default) or uncompressed', () => {
      assert.ok(source.delivers === undefined || source.delivers === 'stored' || source.delivers === 'uncompressed', `delivers ${String(source.delivers)}`)
    })

    test('answers every chunk of a run with the bytes it says it delivers, which decode and verify', async () => {
      const answers = await source.getChunks(all)
      assert.equal(answers.length, all.length)
      for (const [i, answer] of answers.entries()) {
        assert.ok(answer !== undefined, `chunk ${all[i].index} missing`)
        assert.equal(answer.length, deliveredSize(source, all[i]))
        const data = decodeAnswer(source, answer, all[i])
        assert.equal(data.length, all[i].uncompressedSize)
      }
    })

    test('keeps request order for shuffled, non-adjacent and repeated chunks', async () => {
      const picked = [all[5], all[0], all[all.length - 1], all[5], all[2]]
      const answers = await source.getChunks(picked)
      assert.equal(answers.length, picked.length)
      for (const [i, answer] of answers.entries()) {
        assert.ok(answer !== undefined)
        decodeAnswer(source, answer, picked[i])
      }
    })

    test('an empty request answers an empty list', async () => {
      assert.deepEqual(await source.getChunks([]), [])
    })

    test('chunks of a blob it does not hold are undefined, the others still answered', async () => {
      const unknown: ChunkRef = { ...all[0], blobId: 'f'.repeat(64) }
      const answers = await source.getChunks([all[1], unknown, all[2]])
      assert.equal(answers.length, 3)
      assert.equal(answers[1], undefined)
      decodeAnswer(source, answers[0]!, all[1])
      decodeAnswer(source, answers[2]!, all[2])
    })

    test('an aborted signal rejects with AbortError', async () => {
      await assert.rejects(source.getChunks(all.slice(0, 2), { signal: AbortSignal.abort() }), { name: 'AbortError' })
    })
  })
}
