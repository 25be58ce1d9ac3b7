/**
 * The 512-byte GNU tar headers Nydus puts AFTER each section of a blob (chunk data, blob.meta,
 * blob.digest, ToC), so that a blob can be written as a stream and walked back from its end.
 * Written byte for byte as the Rust `tar` crate's Header::new_gnu does it for nydus-image.
 */
import { BlobFormatError } from '../errors.js'

export const TAR_HEADER_SIZE = 512

const NAME_SIZE = 100
const SIZE_OFFSET = 124
const SIZE_FIELD = 12
const MTIME_OFFSET = 136
const CHECKSUM_OFFSET = 148
const CHECKSUM_FIELD = 8
const TYPE_OFFSET = 156
const MAGIC_OFFSET = 257
const GNU_MAGIC = 'ustar  \0'
const USTAR_MAGIC = 'ustar'
/** Largest size in 11 octal digits; beyond it GNU tar stores a base-256 number. */
const MAX_OCTAL_SIZE = 0o77777777777

export function encodeTarHeader (name: string, size: number): Uint8Array {
  const header = new Uint8Array(TAR_HEADER_SIZE)
  const nameBytes = new TextEncoder().encode(name)
  if (nameBytes.length > NAME_SIZE) throw new RangeError(`tar entry name ${name} is longer than ${NAME_SIZE} bytes`)
  header.set(nameBytes, 0)
  if (size <= MAX_OCTAL_SIZE) {
    writeOctal(header, SIZE_OFFSET, SIZE_FIELD, size)
  } else {
    header[SIZE_OFFSET] = 0x80
    let rest = BigInt(size)
    for (let i = SIZE_FIELD - 1; i >= 1; i--) {
      header[SIZE_OFFSET + i] = Number(rest & 0xffn)
      rest >>= 8n
    }
  }
  writeOctal(header, MTIME_OFFSET, 12, 0)
  header[TYPE_OFFSET] = 0x30 // '0': regular file
  header.set(new TextEncoder().encode(GNU_MAGIC), MAGIC_OFFSET)
  writeOctal(header, CHECKSUM_OFFSET, CHECKSUM_FIELD, checksum(header))
  return header
}

export interface TarHeader {
  name: string
  size: number
}

/** Parses the tar header at `bytes[at, at + 512)`; `where` is its file offset, for messages. */
export function decodeTarHeader (bytes: Uint8Array, at: number, where: number): TarHeader {
  if (at < 0 || at + TAR_HEADER_SIZE > bytes.length) {
    throw new BlobFormatError(`tar header at offset ${where}: needs ${TAR_HEADER_SIZE} bytes, ${Math.max(0, bytes.length - at)} available`)
  }
  const header = bytes.subarray(at, at + TAR_HEADER_SIZE)
  const magic = new TextDecoder('latin1').decode(header.subarray(MAGIC_OFFSET, MAGIC_OFFSET + 5))
  if (magic !== USTAR_MAGIC) {
    throw new BlobFormatError(`tar header at offset ${where}: magic ${JSON.stringify(magic)}, expected "ustar"`)
  }
  const stored = parseOctal(header, CHECKSUM_OFFSET, CHECKSUM_FIELD)
  const actual = checksum(header)
  if (stored !== actual) {
    throw new BlobFormatError(`tar header at offset ${where}: checksum ${stored}, computed ${actual}`)
  }
  const type = header[TYPE_OFFSET]
  if (type !== 0x30 && type !== 0) {
    throw new BlobFormatError(`tar header at offset ${where}: entry type ${type}, expected a regular file`)
  }
  const nameEnd = header.subarray(0, NAME_SIZE).indexOf(0)
  const name = new TextDecoder().decode(header.subarray(0, nameEnd < 0 ? NAME_SIZE : nameEnd))
  let size: number
  if ((header[SIZE_OFFSET] & 0x80) !== 0) {
    let value = 0n
    for (let i = 1; i < SIZE_FIELD; i++) value = (value << 8n) | BigInt(header[SIZE_OFFSET + i])
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new BlobFormatError(`tar header at offset ${where}: size ${value} is too large`)
    size = Number(value)
  } else {
    size = parseOctal(header, SIZE_OFFSET, SIZE_FIELD)
  }
  if (size < 0) throw new BlobFormatError(`tar header at offset ${where}: size field is not an octal number`)
  return { name, size }
}

/** Sum of the header bytes with the checksum field counted as spaces. */
function checksum (header: Uint8Array): number {
  let sum = 0
  for (let i = 0; i < TAR_HEADER_SIZE; i++) {
    sum += i >= CHECKSUM_OFFSET && i < CHECKSUM_OFFSET + CHECKSUM_FIELD ? 0x20 : header[i]
  }
  return sum
}

/** Zero-padded octal digits filling the field but its last byte, which is NUL. */
function writeOctal (header: Uint8Array, offset: number, field: number, value: number): void {
  const digits = value.toString(8).padStart(field - 1, '0')
  for (let i = 0; i < field - 1; i++) header[offset + i] = digits.charCodeAt(i)
  header[offset + field - 1] = 0
}

/** Octal digits, optionally surrounded by spaces and ended by NUL or space; -1 when malformed. */
function parseOctal (header: Uint8Array, offset: number, field: number): number {
  let value = 0
  let seen = false
  for (let i = 0; i < field; i++) {
    const c = header[offset + i]
    if (c >= 0x30 && c <= 0x37) {
      value = value * 8 + (c - 0x30)
      seen = true
    } else if (c === 0 || c === 0x20) {
      if (seen) break
    } else {
      return -1
    }
  }
  return seen ? value : -1
}
