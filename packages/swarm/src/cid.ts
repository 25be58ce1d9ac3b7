/**
 * The DHT key of a blob: CIDv1, raw codec, sha2-256 multihash whose digest is the blob's own
 * sha256 (its id). One provider record per blob, never per chunk.
 */
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import type { BlobId } from '@shoal/interface'
import { blobIdBytes } from './protocol.js'

export function blobCid (blobId: BlobId): CID {
  return CID.createV1(raw.code, createDigest(sha256.code, blobIdBytes(blobId)))
}
