/**
 * A streaming tar reader for OCI layers: ustar, PAX (local and global headers), GNU long
 * names/links and old-style sparse files, PAX sparse 0.0/0.1/1.0, base-256 numbers. File bodies
 * flow through as views of the input buffers; nothing holds a whole entry.
 */
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { ByteReader } from './byte-reader.js'
import { TarFormatError, UnsupportedTarEntryError } from './errors.js'

const BLOCK = 512
/** Upper bound on PAX and GNU long-name bodies: metadata, never file data. */
const MAX_META_BODY = 16 * 1024 * 1024
/** Upper bound on sparse map entries; each costs memory before any data is read. */
const MAX_SPARSE_SEGMENTS = 1 << 20
/** Largest piece of a file body handed out at once. */
const BODY_PIECE = 1024 * 1024
const ZEROS = new Uint8Array(BODY_PIECE)

/**
 * True for the pieces of a sparse file's body that stand for holes (views of one shared zero
 * buffer): a chunker can leave whole-hole chunks out instead of storing and hashing zeros.
 */
export function isHolePiece (piece: Uint8Array): boolean {
  return piece.buffer === ZEROS.buffer
}

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo'

export interface TarEntry {
  type: TarEntryType
  /** The name as the archive spells it (PAX path, GNU long name or prefix/name), not normalized. */
  path: string
  /** Symlink target or hard link target, as the archive spells it. */
  linkpath?: string
  /** Permission bits including setuid, setgid and sticky (no file type bits). */
  mode: number
  uid: number
  gid: number
  /** Logical size: for sparse files, the full size with holes. */
  size: number
  mtime: number
  mtimeNsec: number
  devMajor: number
  devMinor: number
  xattrs: Map<string, Uint8Array>
  /** Offset of the entry's header in the (decompressed) tar stream, for error messages. */
  headerOffset: number
  /** The file's bytes (holes as zeros); empty for everything but files. Read at most once, before the next entry. */
  body: AsyncIterable<Uint8Array>
}

interface SparseSegment { offset: number, length: number }

/** Extended header state that applies to the next entry. */
interface PendingHeaders {
  pax: Map<string, Uint8Array>
  sparsePairs: number[]
  longName?: string
  longLink?: string
}

const decoder = new TextDecoder()

function text (bytes: Uint8Array): string {
  return decoder.decode(bytes)
}

/** A NUL-terminated string field. */
function field (header: Uint8Array, start: number, length: number): string {
  const bytes = header.subarray(start, start + length)
  const end = bytes.indexOf(0)
  return text(end === -1 ? bytes : bytes.subarray(0, end))
}

/** An octal ASCII or base-256 (GNU/star) number field. */
function numeric (header: Uint8Array, start: number, length: number, name: string, headerOffset: number): number {
  const bytes = header.subarray(start, start + length)
  if ((bytes[0] & 0x80) !== 0) {
    // Base-256: big-endian two's complement, the top bit of the first byte only marks the form.
    let value = BigInt(bytes[0] & 0x7f) - ((bytes[0] & 0x40) !== 0 ? 0x80n : 0n)
    for (let i = 1; i < bytes.length; i++) value = (value << 8n) | BigInt(bytes[i])
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new TarFormatError(`tar header at offset ${headerOffset}: base-256 ${name} ${value} is out of range`)
    }
    return Number(value)
  }
  let value = 0
  let seenDigit = false
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]
    if (c === 0x20 && !seenDigit) continue
    if (c === 0 || c === 0x20) break
    if (c < 0x30 || c > 0x37) {
      throw new TarFormatError(`tar header at offset ${headerOffset}: ${name} field is not octal: ${JSON.stringify(text(bytes))}`)
    }
    value = value * 8 + (c - 0x30)
    seenDigit = true
  }
  return value
}

function isZeroBlock (block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false
  return true
}

function verifyChecksum (header: Uint8Array, headerOffset: number): void {
  const stored = numeric(header, 148, 8, 'checksum', headerOffset)
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < BLOCK; i++) {
    const b = (i >= 148 && i < 156) ? 0x20 : header[i]
    unsigned += b
    signed += b > 127 ? b - 256 : b
  }
  // Some old writers summed signed chars; accept either as GNU tar does.
  if (stored !== unsigned && stored !== signed) {
    throw new TarFormatError(`tar header at offset ${headerOffset}: checksum ${stored}, computed ${unsigned}`)
  }
}

/** Parses `LEN key=value\n` records; repeated GNU.sparse.offset/numbytes pairs are kept in order. */
function parsePax (body: Uint8Array, into: Map<string, Uint8Array>, sparsePairs: number[], headerOffset: number): void {
  let pos = 0
  while (pos < body.length) {
    if (body[pos] === 0) break // some writers pad with NULs
    const space = body.indexOf(0x20, pos)
    if (space === -1 || space - pos > 20) throw new TarFormatError(`PAX header at offset ${headerOffset}: record at ${pos} has no length`)
    const length = Number.parseInt(text(body.subarray(pos, space)), 10)
    if (!Number.isSafeInteger(length) || length <= space - pos + 1 || pos + length > body.length || body[pos + length - 1] !== 0x0a) {
      throw new TarFormatError(`PAX header at offset ${headerOffset}: record at ${pos} has a bad length ${JSON.stringify(text(body.subarray(pos, space)))}`)
    }
    const record = body.subarray(space + 1, pos + length - 1)
    const eq = record.indexOf(0x3d)
    if (eq === -1) throw new TarFormatError(`PAX header at offset ${headerOffset}: record at ${pos} has no '='`)
    const key = text(record.subarray(0, eq))
    const value = new Uint8Array(record.subarray(eq + 1)) // a plain copy, whatever buffer type came in
    if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') {
      if (sparsePairs.length >= MAX_SPARSE_SEGMENTS * 2) throw new TarFormatError(`PAX header at offset ${headerOffset}: more than ${MAX_SPARSE_SEGMENTS} sparse segments`)
      sparsePairs.push(parseDecimal(text(value), key, headerOffset))
    } else {
      into.set(key, value)
    }
    pos += length
  }
}

function parseDecimal (value: string, name: string, headerOffset: number): number {
  if (!/^\d{1,16}$/.test(value)) throw new TarFormatError(`tar entry at offset ${headerOffset}: ${name} is not a decimal number: ${JSON.stringify(value)}`)
  const n = Number(value)
  if (!Number.isSafeInteger(n)) throw new TarFormatError(`tar entry at offset ${headerOffset}: ${name} ${value} is out of range`)
  return n
}

/** PAX times are decimal seconds with an optional fraction, possibly negative. */
function parsePaxTime (value: string, headerOffset: number): { sec: number, nsec: number } {
  const match = /^(-?)(\d{1,15})(?:\.(\d*))?$/.exec(value)
  if (match == null) throw new TarFormatError(`tar entry at offset ${headerOffset}: PAX mtime is not a time: ${JSON.stringify(value)}`)
  let sec = Number(match[2])
  let nsec = Number((match[3] ?? '').slice(0, 9).padEnd(9, '0'))
  if (match[1] === '-') {
    sec = -sec
    if (nsec !== 0) { sec -= 1; nsec = 1e9 - nsec }
  }
  return { sec, nsec }
}

function validateSegments (segments: SparseSegment[], realSize: number, storedSize: number, headerOffset: number): void {
  let end = 0
  let stored = 0
  for (const s of segments) {
    if (s.offset < end || s.offset + s.length > realSize) {
      throw new TarFormatError(`sparse entry at offset ${headerOffset}: segment [${s.offset}, +${s.length}) overlaps or exceeds the real size ${realSize}`)
    }
    end = s.offset + s.length
    stored += s.length
  }
  if (stored !== storedSize) {
    throw new TarFormatError(`sparse entry at offset ${headerOffset}: map covers ${stored} stored bytes, archive holds ${storedSize}`)
  }
}

/** Reads the old GNU sparse map: 4 entries in the header, 21 in each extension block. */
async function readGnuSparseMap (reader: ByteReader, header: Uint8Array, headerOffset: number): Promise<SparseSegment[]> {
  const segments: SparseSegment[] = []
  const collect = (block: Uint8Array, start: number, count: number): void => {
    for (let i = 0; i < count; i++) {
      const at = start + i * 24
      if (block[at] === 0) return
      segments.push({
        offset: numeric(block, at, 12, 'sparse offset', headerOffset),
        length: numeric(block, at + 12, 12, 'sparse numbytes', headerOffset)
      })
    }
  }
  collect(header, 386, 4)
  let extended = header[482] !== 0
  while (extended) {
    if (segments.length > MAX_SPARSE_SEGMENTS) throw new TarFormatError(`GNU sparse entry at offset ${headerOffset}: more than ${MAX_SPARSE_SEGMENTS} segments`)
    const block = await reader.readExact(BLOCK, 'GNU sparse extension block')
    if (block === undefined) throw new TarFormatError(`GNU sparse entry at offset ${headerOffset}: stream ended in its extension blocks`)
    collect(block, 0, 21)
    extended = block[504] !== 0
  }
  return segments
}

/** PAX sparse 1.0 keeps its map at the start of the data: decimal lines, padded to a block. */
async function readSparse1Map (reader: ByteReader, storedSize: number, headerOffset: number): Promise<{ segments: SparseSegment[], mapBytes: number }> {
  let consumed = 0
  let buffered = ''
  const nextNumber = async (): Promise<number> => {
    for (let guard = 0; ; guard++) {
      const newline = buffered.indexOf('\n')
      if (newline !== -1) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        return parseDecimal(line, 'sparse 1.0 map number', headerOffset)
      }
      if (buffered.length > 32 || guard > 64) throw new TarFormatError(`PAX sparse 1.0 entry at offset ${headerOffset}: map line too long`)
      if (consumed + BLOCK > storedSize) throw new TarFormatError(`PAX sparse 1.0 entry at offset ${headerOffset}: map runs past the entry's data`)
      const block = await reader.readExact(BLOCK, 'sparse 1.0 map')
      if (block === undefined) throw new TarFormatError(`PAX sparse 1.0 entry at offset ${headerOffset}: stream ended in its map`)
      consumed += BLOCK
      buffered += text(block)
    }
  }
  const count = await nextNumber()
  if (count > MAX_SPARSE_SEGMENTS) throw new TarFormatError(`PAX sparse 1.0 entry at offset ${headerOffset}: ${count} segments is more than ${MAX_SPARSE_SEGMENTS}`)
  const segments: SparseSegment[] = []
  for (let i = 0; i < count; i++) {
    const offset = await nextNumber()
    const length = await nextNumber()
    segments.push({ offset, length })
  }
  return { segments, mapBytes: consumed }
}

function entryType (flag: string, headerOffset: number, path: string): TarEntryType | 'skip' | 'sparse' {
  switch (flag) {
    case '0': case '\0': case '7': return 'file'
    case '1': return 'hardlink'
    case '2': return 'symlink'
    case '3': return 'char'
    case '4': return 'block'
    case '5': return 'directory'
    case '6': return 'fifo'
    case 'S': return 'sparse'
    case 'D': return 'directory' // GNU dumpdir: a directory whose body lists names; the body is skipped
    case 'V': return 'skip' // GNU volume label
    default:
      throw new UnsupportedTarEntryError(`tar entry ${JSON.stringify(path)} at offset ${headerOffset}: type flag ${JSON.stringify(flag)} is not supported`)
  }
}

/**
 * Yields the entries of an uncompressed tar stream. Each entry's `body` must be read (or left
 * alone) before asking for the next entry; what is left unread is skipped. An empty stream is an
 * archive with no entries. After the end-of-archive block the rest of the input is drained so a
 * caller hashing the stream sees every byte.
 */
export async function * readTar (source: AsyncIterable<Uint8Array>, options: AbortOptions = {}): AsyncGenerator<TarEntry> {
  const reader = new ByteReader(source)
  const globalPax = new Map<string, Uint8Array>()
  let pending: PendingHeaders = { pax: new Map(), sparsePairs: [] }

  // Each pass consumes at least one 512-byte block, so the loop is bounded by the input.
  for (;;) {
    throwIfAborted(options)
    const headerOffset = reader.offset
    const header = await reader.readExact(BLOCK, 'tar header')
    if (header === undefined) return
    if (isZeroBlock(header)) {
      await reader.drain()
      return
    }
    verifyChecksum(header, headerOffset)
    const flag = String.fromCharCode(header[156])
    const headerSize = numeric(header, 124, 12, 'size', headerOffset)
    if (headerSize < 0) throw new TarFormatError(`tar header at offset ${headerOffset}: negative size ${headerSize}`)
    const padding = (BLOCK - headerSize % BLOCK) % BLOCK

    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (headerSize > MAX_META_BODY) throw new TarFormatError(`tar header at offset ${headerOffset}: ${headerSize}-byte ${flag} body exceeds ${MAX_META_BODY}`)
      const body = await reader.readExact(headerSize, `${flag} header body`) ?? new Uint8Array(0)
      if (body.length !== headerSize) throw new TarFormatError(`tar header at offset ${headerOffset}: stream ended in its ${flag} body`)
      await reader.skip(padding, 'tar padding')
      if (flag === 'x') parsePax(body, pending.pax, pending.sparsePairs, headerOffset)
      else if (flag === 'g') parsePax(body, globalPax, [], headerOffset)
      else {
        const end = body.indexOf(0)
        const name = text(end === -1 ? body : body.subarray(0, end))
        if (flag === 'L') pending.longName = name
        else pending.longLink = name
      }
      continue
    }

    const pax = new Map([...globalPax, ...pending.pax])
    for (const [key, value] of pax) if (value.length === 0) pax.delete(key) // an empty value deletes
    const paxText = (key: string): string | undefined => { const v = pax.get(key); return v === undefined ? undefined : text(v) }

    const magic = field(header, 257, 6)
    const isUstar = magic === 'ustar' && header[263] === 0x30 && header[264] === 0x30
    const prefix = isUstar ? field(header, 345, 155) : ''
    const headerName = field(header, 0, 100)
    let path = paxText('path') ?? pending.longName ?? (prefix !== '' ? `${prefix}/${headerName}` : headerName)
    const linkpath = paxText('linkpath') ?? pending.longLink ?? field(header, 157, 100)
    let kind = entryType(flag, headerOffset, path)
    const storedSize = pax.has('size') ? parseDecimal(paxText('size') ?? '', 'PAX size', headerOffset) : headerSize
    const storedPadding = (BLOCK - storedSize % BLOCK) % BLOCK

    let mtime = numeric(header, 136, 12, 'mtime', headerOffset)
    let mtimeNsec = 0
    const paxMtime = paxText('mtime')
    if (paxMtime !== undefined) ({ sec: mtime, nsec: mtimeNsec } = parsePaxTime(paxMtime, headerOffset))

    const xattrs = new Map<string, Uint8Array>()
    for (const [key, value] of pax) {
      if (key.startsWith('SCHILY.xattr.')) xattrs.set(key.slice('SCHILY.xattr.'.length), value)
      else if (key.startsWith('LIBARCHIVE.xattr.')) {
        xattrs.set(decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(text(value), 'base64'))
      }
    }

    // Sparse files: the logical layout comes from a map; the archive holds only the data segments.
    let segments: SparseSegment[] | undefined
    let realSize = storedSize
    let dataSize = storedSize
    if (kind === 'sparse') {
      segments = await readGnuSparseMap(reader, header, headerOffset)
      realSize = numeric(header, 483, 12, 'sparse realsize', headerOffset)
      kind = 'file'
    } else if (kind === 'file' && (pax.has('GNU.sparse.major') || pax.has('GNU.sparse.map') || pending.sparsePairs.length > 0 || pax.has('GNU.sparse.size'))) {
      const major = paxText('GNU.sparse.major')
      const minor = paxText('GNU.sparse.minor')
      path = paxText('GNU.sparse.name') ?? path
      if (major === '1' && minor === '0') {
        realSize = parseDecimal(paxText('GNU.sparse.realsize') ?? '', 'GNU.sparse.realsize', headerOffset)
        const map = await readSparse1Map(reader, storedSize, headerOffset)
        segments = map.segments
        dataSize = storedSize - map.mapBytes
      } else if (major === undefined) {
        realSize = parseDecimal(paxText('GNU.sparse.size') ?? paxText('GNU.sparse.realsize') ?? '', 'GNU.sparse.size', headerOffset)
        const numbers = pax.has('GNU.sparse.map')
          ? (paxText('GNU.sparse.map') ?? '').split(',').filter(s => s !== '').map(s => parseDecimal(s, 'GNU.sparse.map', headerOffset))
          : pending.sparsePairs
        if (numbers.length % 2 !== 0) throw new TarFormatError(`PAX sparse entry at offset ${headerOffset}: odd number of map values`)
        if (numbers.length > MAX_SPARSE_SEGMENTS * 2) throw new TarFormatError(`PAX sparse entry at offset ${headerOffset}: more than ${MAX_SPARSE_SEGMENTS} segments`)
        segments = []
        for (let i = 0; i < numbers.length; i += 2) segments.push({ offset: numbers[i], length: numbers[i + 1] })
      } else {
        throw new UnsupportedTarEntryError(`tar entry ${JSON.stringify(path)} at offset ${headerOffset}: PAX sparse format ${major}.${minor ?? '?'} is not supported`)
      }
    }
    if (segments !== undefined) validateSegments(segments, realSize, dataSize, headerOffset)
    pending = { pax: new Map(), sparsePairs: [] }

    if (kind === 'skip') {
      await reader.skip(storedSize + storedPadding, 'skipped entry')
      continue
    }

    let remaining = dataSize
    const readStored = async function * (length: number): AsyncGenerator<Uint8Array> {
      let left = length
      while (left > 0) {
        throwIfAborted(options)
        const piece = await reader.readSome(Math.min(left, BODY_PIECE))
        if (piece === undefined) throw new TarFormatError(`truncated data of ${JSON.stringify(path)} (header at offset ${headerOffset}): ${left} bytes missing`)
        left -= piece.length
        remaining -= piece.length
        yield piece
      }
    }
    const zeros = function * (length: number): Generator<Uint8Array> {
      for (let left = length; left > 0; left -= BODY_PIECE) yield ZEROS.subarray(0, Math.min(left, BODY_PIECE))
    }
    let bodyTaken = false
    const body: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: async function * () {
        if (bodyTaken) throw new TarFormatError(`body of ${JSON.stringify(path)} read twice`)
        bodyTaken = true
        if (kind !== 'file') return
        if (segments === undefined) {
          yield * readStored(dataSize)
          return
        }
        let position = 0
        for (const segment of segments) {
          yield * zeros(segment.offset - position)
          yield * readStored(segment.length)
          position = segment.offset + segment.length
        }
        yield * zeros(realSize - position)
      }
    }

    const mode = numeric(header, 100, 8, 'mode', headerOffset) & 0o7777
    yield {
      type: kind,
      path,
      ...(kind === 'hardlink' || kind === 'symlink' ? { linkpath } : {}),
      mode,
      uid: pax.has('uid') ? parseDecimal(paxText('uid') ?? '', 'PAX uid', headerOffset) : numeric(header, 108, 8, 'uid', headerOffset),
      gid: pax.has('gid') ? parseDecimal(paxText('gid') ?? '', 'PAX gid', headerOffset) : numeric(header, 116, 8, 'gid', headerOffset),
      size: kind === 'file' ? realSize : 0,
      mtime,
      mtimeNsec,
      devMajor: isUstarLike(magic) ? numeric(header, 329, 8, 'devmajor', headerOffset) : 0,
      devMinor: isUstarLike(magic) ? numeric(header, 337, 8, 'devminor', headerOffset) : 0,
      xattrs,
      headerOffset,
      body
    }
    bodyTaken = true
    if (remaining > 0) await reader.skip(remaining, `data of ${JSON.stringify(path)}`)
    await reader.skip(storedPadding, 'tar padding')
  }
}

function isUstarLike (magic: string): boolean {
  return magic.startsWith('ustar')
}
