import { ShoalError } from '@shoal/interface'

/**
 * A bootstrap or blob that does not parse: bad magic, an offset or size out of range, a loop in
 * the tree, an absurd count. The message says what was wrong and where (byte offset, inode).
 */
export class RafsFormatError extends ShoalError {
  override name = 'RafsFormatError'
  override readonly code: string = 'ERR_RAFS_FORMAT'
}

export class RafsBadMagicError extends RafsFormatError {
  override name = 'RafsBadMagicError'
  override readonly code = 'ERR_RAFS_BAD_MAGIC'
}

export class RafsUnsupportedError extends RafsFormatError {
  override name = 'RafsUnsupportedError'
  override readonly code = 'ERR_RAFS_UNSUPPORTED'
}

/** An offset, size or count that points outside the buffer or past a sane limit. */
export class RafsOutOfRangeError extends RafsFormatError {
  override name = 'RafsOutOfRangeError'
  override readonly code = 'ERR_RAFS_OUT_OF_RANGE'
}

/** A directory that contains itself, directly or through its descendants. */
export class RafsLoopError extends RafsFormatError {
  override name = 'RafsLoopError'
  override readonly code = 'ERR_RAFS_LOOP'
}

/** A blob file whose chunk data, blob.meta or ToC does not parse or does not match the bootstrap. */
export class BlobFormatError extends RafsFormatError {
  override name = 'BlobFormatError'
  override readonly code = 'ERR_BLOB_FORMAT'
}

/** Compressed chunk bytes that fail to decompress to the expected size. */
export class DecompressError extends RafsFormatError {
  override name = 'DecompressError'
  override readonly code = 'ERR_DECOMPRESS'
}

/**
 * A field whose value cannot be right whatever the buffer holds: an unknown file type, two entries
 * with one name, hard-link copies that disagree, records that overlap.
 */
export class RafsCorruptError extends RafsFormatError {
  override name = 'RafsCorruptError'
  override readonly code = 'ERR_RAFS_CORRUPT'
}
