/**
 * Malformed v5 bootstraps, made by patching a real one: each must parse or throw a RafsFormatError
 * subclass, quickly, and never crash, hang or allocate what a lying field asks for.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  RafsBadMagicError, RafsFormatError, RafsLoopError, RafsOutOfRangeError, RafsUnsupportedError
} from '../src/errors.js'
import { treeJson } from '../src/tree-json.js'
import { readBootstrapV5 } from '../src/v5/index.js'
import { nydusFixtures } from '@shoal/interface/test-fixtures'

const FIXTURE = join(nydusFixtures(), 'repeatable', 'sha256-nocompress-repeatable')
const original = new Uint8Array(readFileSync(FIXTURE))

// Superblock fields (v5.rs RafsV5SuperBlock) and inode fields (RafsV5Inode) this file patches.
const SB_INODES_COUNT = 24
const SB_INODE_TABLE_OFFSET = 32
const SB_PREFETCH_TABLE_OFFSET = 40
const SB_BLOB_TABLE_OFFSET = 48
const SB_INODE_TABLE_ENTRIES = 56
const SB_PREFETCH_TABLE_ENTRIES = 60
const SB_BLOB_TABLE_SIZE = 64
const SB_EXT_BLOB_TABLE_OFFSET = 72
const INODE_FLAGS = 80
const INODE_CHILD_INDEX = 92
const INODE_CHILD_COUNT = 96
const INODE_NAME_SIZE = 100

// Table indexes in this vector (see its tree): 1 root, 4 symlink-test, 5 hardlink-test/foo,
// 7 busybox, 10 busybox/1f77…, 17 etc, 20 layer.tar (2 chunks), 27 etc/network.
function patched (change: (dv: DataView, recordAt: (index: number) => number) => void): Uint8Array {
  const bytes = Uint8Array.from(original)
  const dv = new DataView(bytes.buffer)
  const tableAt = Number(dv.getBigUint64(SB_INODE_TABLE_OFFSET, true))
  change(dv, index => dv.getUint32(tableAt + (index - 1) * 4, true) * 8)
  return bytes
}

function expectError (bytes: Uint8Array, type: new (...args: any[]) => RafsFormatError, message: RegExp): void {
  assert.throws(() => readBootstrapV5(bytes), (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`)
    assert.match((err as Error).message, message)
    return true
  })
}

/** Parses or throws a RafsFormatError; anything else (TypeError, RangeError, a hang) fails the test. */
function parseOrFormatError (bytes: Uint8Array): 'parsed' | 'refused' {
  try {
    const image = readBootstrapV5(bytes)
    treeJson(image)
    return 'parsed'
  } catch (err) {
    if (err instanceof RafsFormatError) return 'refused'
    throw err
  }
}

/** mulberry32: a small seeded generator, so a failing variant can be replayed. */
function random (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('RAFS v5 reader: malformed bootstraps', () => {
  it('the unpatched vector parses', () => {
    assert.equal(parseOrFormatError(original), 'parsed')
  })

  describe('loops', () => {
    it('a directory whose child index points at its ancestor', () => {
      // etc/network's only child becomes busybox/1f77…, two levels up.
      const bytes = patched((dv, recordAt) => {
        dv.setUint32(recordAt(27) + INODE_CHILD_INDEX, 10, true)
        dv.setUint32(recordAt(27) + INODE_CHILD_COUNT, 1, true)
      })
      expectError(bytes, RafsLoopError, /directory ino 27 .*child at table index 10 is directory ino 10, which is the directory itself or its ancestor/)
    })
    it('a directory whose children start with itself', () => {
      const bytes = patched((dv, recordAt) => dv.setUint32(recordAt(4) + INODE_CHILD_INDEX, 4, true))
      expectError(bytes, RafsLoopError, /directory ino 4 .* is directory ino 4, which is the directory itself/)
    })
    it('a directory whose children include the root', () => {
      const bytes = patched((dv, recordAt) => dv.setUint32(recordAt(4) + INODE_CHILD_INDEX, 1, true))
      expectError(bytes, RafsLoopError, /is directory ino 1, which is the directory itself or its ancestor/)
    })
  })

  describe('counts and offsets that lie', () => {
    it('bad magic, and versions other than v5', () => {
      expectError(patched(dv => dv.setUint32(0, 0x12345678, true)), RafsBadMagicError, /expected RAFS magic 0x52414653 at byte 0, found 0x12345678/)
      expectError(patched(dv => dv.setUint32(4, 0x600, true)), RafsUnsupportedError, /RAFS v6/)
      expectError(patched(dv => dv.setUint32(4, 0x400, true)), RafsUnsupportedError, /0x400 \(RAFS v4\)/)
      expectError(new Uint8Array(0), RafsOutOfRangeError, /bootstrap is 0 bytes/)
    })
    it('an absurd inode count', () => {
      expectError(patched(dv => dv.setBigUint64(SB_INODES_COUNT, 1n << 62n, true)), RafsOutOfRangeError, /superblock says 4611686018427387904 inodes .* 54 entries/)
    })
    it('an absurd inode table size', () => {
      expectError(patched(dv => dv.setUint32(SB_INODE_TABLE_ENTRIES, 0xffff_ffff, true)), RafsOutOfRangeError, /inode table at bytes 8192\.\.17179877372 .* outside the metadata/)
      expectError(patched(dv => dv.setUint32(SB_INODE_TABLE_ENTRIES, 0, true)), RafsOutOfRangeError, /inode table has 0 entries/)
    })
    it('table offsets past the end, unaligned, or beyond 2^53', () => {
      expectError(patched(dv => dv.setBigUint64(SB_INODE_TABLE_OFFSET, 1n << 40n, true)), RafsOutOfRangeError, /inode table at bytes 1099511627776\.\./)
      expectError(patched(dv => dv.setBigUint64(SB_INODE_TABLE_OFFSET, 1n << 60n, true)), RafsOutOfRangeError, /inode table offset at byte 32 is 1152921504606846976, beyond 2\^53/)
      expectError(patched(dv => dv.setBigUint64(SB_INODE_TABLE_OFFSET, 8196n, true)), RafsFormatError, /not 8-byte aligned/)
      expectError(patched(dv => dv.setBigUint64(SB_BLOB_TABLE_OFFSET, 18648n, true)), RafsOutOfRangeError, /blob table at bytes 18648\.\.18720/)
      expectError(patched(dv => dv.setUint32(SB_BLOB_TABLE_SIZE, 0x7fff_ffff, true)), RafsOutOfRangeError, /blob table/)
      expectError(patched(dv => dv.setBigUint64(SB_EXT_BLOB_TABLE_OFFSET, 18600n, true)), RafsOutOfRangeError, /extended blob table at bytes 18600\.\.18664/)
      expectError(patched(dv => dv.setUint32(SB_PREFETCH_TABLE_ENTRIES, 0x4000_0000, true)), RafsOutOfRangeError, /prefetch table/)
      expectError(patched(dv => dv.setBigUint64(SB_BLOB_TABLE_OFFSET, 8192n, true)), RafsFormatError, /blob table \(bytes 8192\.\.8264\) overlaps inode table/)
      expectError(patched(dv => {
        dv.setUint32(SB_PREFETCH_TABLE_ENTRIES, 2, true)
        dv.setBigUint64(SB_PREFETCH_TABLE_OFFSET, 8200n, true)
      }), RafsFormatError, /prefetch table \(bytes 8200\.\.8208\) overlaps inode table/)
    })
    it('an inode table entry pointing past the end or into the superblock', () => {
      const tableAt = 8192
      expectError(patched(dv => dv.setUint32(tableAt + 4 * 4, 0xffff_ffff, true)), RafsOutOfRangeError, /inode table entry 5 \(record at byte 34359738360\)/)
      expectError(patched(dv => dv.setUint32(tableAt + 4 * 4, 16, true)), RafsOutOfRangeError, /inode table entry 5 .* points inside the superblock/)
    })
    it('a child range past the inode table', () => {
      const bytes = patched((dv, recordAt) => dv.setUint32(recordAt(4) + INODE_CHILD_COUNT, 0xffff_ffff, true))
      expectError(bytes, RafsOutOfRangeError, /directory ino 4 .* outside the inode table \(1\.\.54\)/)
    })
    it('a file claiming 2^32-1 chunks', () => {
      const bytes = patched((dv, recordAt) => dv.setUint32(recordAt(20) + INODE_CHILD_COUNT, 0xffff_ffff, true))
      expectError(bytes, RafsOutOfRangeError, /inode table entry 20 .* ino 20: inode record: needs bytes 11936\.\.343597395680, but the bootstrap is 18648 bytes/)
    })
    it('an xattr table of 2^50 bytes', () => {
      const bytes = patched((dv, recordAt) => {
        const at = recordAt(20)
        dv.setBigUint64(at + INODE_FLAGS, 0x4n, true)
        // The xattr size is read right after the name "layer.tar" (9 bytes, padded to 16).
        dv.setBigUint64(at + 128 + 16, 1n << 50n, true)
      })
      expectError(bytes, RafsOutOfRangeError, /ino 20: inode record/)
    })
    it('a name longer than Linux allows', () => {
      const bytes = patched((dv, recordAt) => dv.setUint16(recordAt(20) + INODE_NAME_SIZE, 0xffff, true))
      expectError(bytes, RafsFormatError, /ino 20: name is 65535 bytes; expected 1\.\.255/)
    })
  })

  it('refuses every truncation of the vector', () => {
    const started = performance.now()
    let cases = 0
    for (let length = 0; length < original.length; length += length < 8400 ? 7 : 3) {
      assert.throws(() => readBootstrapV5(original.subarray(0, length)), RafsFormatError, `truncated to ${length} bytes`)
      cases++
    }
    assert.ok(cases > 3000)
    assert.ok(performance.now() - started < 10_000, 'quickly')
  })

  it('parses or refuses 400 seeded variants with random bit flips, each quickly', () => {
    const next = random(0x5eed)
    const outcomes = { parsed: 0, refused: 0 }
    let slowest = 0
    for (let variant = 0; variant < 400; variant++) {
      const bytes = Uint8Array.from(original)
      const flips = 1 + Math.floor(next() * 4)
      const where: number[] = []
      for (let f = 0; f < flips; f++) {
        // Half the flips in the superblock's fields, half in the tables and records after it.
        const at = next() < 0.5 ? Math.floor(next() * 80) : 8192 + Math.floor(next() * (bytes.length - 8192))
        bytes[at] ^= 1 << Math.floor(next() * 8)
        where.push(at)
      }
      const started = performance.now()
      try {
        outcomes[parseOrFormatError(bytes)]++
      } catch (err) {
        assert.fail(`variant ${variant} (bits flipped at bytes ${where.join(', ')}) threw ${String(err)}`)
      }
      slowest = Math.max(slowest, performance.now() - started)
    }
    assert.ok(outcomes.parsed > 20, `some variants still parse (${outcomes.parsed})`)
    assert.ok(outcomes.refused > 100, `many are refused (${outcomes.refused})`)
    assert.ok(slowest < 500, `slowest variant took ${slowest} ms`)
  })
})
