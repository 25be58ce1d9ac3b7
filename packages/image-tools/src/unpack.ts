import { execFile } from 'node:child_process'
import { mkdir, open, readdir, symlink, link, lchown, chmod, writeFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { promisify } from 'node:util'
import { throwIfAborted, type AbortOptions, type BlobBackend, type ProgressOptions, type ProgressEvent } from '@shoal/interface'
import { deviceMajor, deviceMinor, RafsOutOfRangeError, type RafsImage, type RafsNode } from '@shoal/rafs'
import { readVerifiedChunk } from '@shoal/blob-device'
import { listImage, type ImageEntry } from './image-walk.js'
import { OutputNotEmptyError, ToolFailedError } from './errors.js'

const run = promisify(execFile)

export type UnpackProgressEvent = ProgressEvent<'unpack:file', { path: string, bytes: number }>

export interface UnpackOptions extends AbortOptions, ProgressOptions<UnpackProgressEvent> {
  /** Set owners from the image (needs root). Default: when running as root. */
  owners?: boolean
}

export interface UnpackResult {
  files: number
  directories: number
  symlinks: number
  hardlinks: number
  devices: number
  /** Bytes of file data written (holes not counted). */
  bytes: number
  /** Entries that cannot be made here (sockets), by path. */
  skipped: string[]
}

/**
 * Writes the image's tree into `out` (which must be absent or empty): file contents (every chunk
 * verified), modes, owners, times, xattrs, symlinks, hard links and device nodes.
 *
 * Nothing is written outside `out`: names are checked to be single components, files are created
 * with O_EXCL (never through an existing link), and symlinks are made last, after every file and
 * directory, so no later write can pass through one.
 */
export async function unpackImage (image: RafsImage, blobs: BlobBackend, out: string, options: UnpackOptions = {}): Promise<UnpackResult> {
  throwIfAborted(options)
  const entries = listImage(image.root)
  await prepareOutput(out)
  const result: UnpackResult = { files: 0, directories: 0, symlinks: 0, hardlinks: 0, devices: 0, bytes: 0, skipped: [] }
  const firstPathOf = new Map<RafsNode, string>()
  const symlinks: ImageEntry[] = []
  const withMetadata: ImageEntry[] = []

  for (const entry of entries) {
    throwIfAborted(options)
    const target = join(out, entry.path)
    const { node } = entry
    if (entry.hardlink) {
      await link(join(out, firstPathOf.get(node)!), target)
      result.hardlinks++
      continue
    }
    firstPathOf.set(node, entry.path)
    switch (node.type) {
      case 'directory':
        await mkdir(target, { mode: 0o700 })
        result.directories++
        break
      case 'file': {
        const bytes = await writeFileContents(image, blobs, node, target, entry.path, options)
        result.files++
        result.bytes += bytes
        options.onProgress?.({ type: 'unpack:file', detail: { path: entry.path, bytes } })
        break
      }
      case 'symlink':
        symlinks.push(entry)
        continue
      case 'char':
      case 'block':
      case 'fifo':
        await makeNode(node, target)
        result.devices++
        break
      case 'socket':
        result.skipped.push(entry.path)
        continue
    }
    withMetadata.push(entry)
  }
  for (const entry of symlinks) {
    await symlink(entry.node.target ?? '', join(out, entry.path))
    result.symlinks++
    withMetadata.push(entry)
  }

  await restoreXattrs(out, [{ path: '', node: image.root, hardlink: false }, ...withMetadata])
  const owners = options.owners ?? process.getuid?.() === 0
  // Deepest first, so that setting a directory's times comes after every change inside it.
  const rootEntry: ImageEntry = { path: '', node: image.root, hardlink: false }
  for (const entry of [rootEntry, ...withMetadata].reverse()) {
    const path = join(out, entry.path)
    const { node } = entry
    // chown before chmod: chown clears the set-id bits.
    if (owners) await lchown(path, node.uid, node.gid)
    if (node.type !== 'symlink') await chmod(path, node.mode & 0o7777)
  }
  await restoreTimes(out, [rootEntry, ...withMetadata])
  return result
}

/**
 * Sets access and modification times to the nanosecond. Node's utimes takes seconds as a double,
 * which keeps only about a microsecond of a current time, so the exact times go through
 * `touch -h -d @SEC.NSEC`, one run per distinct time and up to 500 paths each (layers tend to
 * share a few times, so this stays a handful of runs).
 */
async function restoreTimes (out: string, entries: ImageEntry[]): Promise<void> {
  const byTime = new Map<string, string[]>()
  for (const { path, node } of entries) {
    const time = `${node.mtime}.${String(node.mtimeNsec).padStart(9, '0')}`
    let paths = byTime.get(time)
    if (paths == null) byTime.set(time, paths = [])
    paths.push(join(out, path))
  }
  for (const [time, paths] of byTime) {
    for (let i = 0; i < paths.length; i += 500) {
      const batch = paths.slice(i, i + 500)
      try {
        await run('touch', ['-h', '-d', `@${time}`, '--', ...batch])
      } catch (err: any) {
        throw new ToolFailedError(`touch -d @${time} failed: ${String(err.stderr ?? err.message).trim()}`)
      }
    }
  }
}

async function prepareOutput (out: string): Promise<void> {
  await mkdir(out, { recursive: true })
  const existing = await readdir(out)
  if (existing.length > 0) throw new OutputNotEmptyError(`output directory ${out} is not empty (${existing.length} entries)`)
}

async function writeFileContents (image: RafsImage, blobs: BlobBackend, node: RafsNode, target: string, path: string, options: AbortOptions): Promise<number> {
  // 'wx' is O_CREAT|O_EXCL: fails on anything already there, links included.
  const handle = await open(target, 'wx', 0o600)
  let written = 0
  try {
    for (const chunk of node.chunks ?? []) {
      if (chunk.fileOffset + chunk.uncompressedSize > node.size) {
        throw new RafsOutOfRangeError(`file ${path}: chunk ${chunk.index} covers bytes ${chunk.fileOffset}..${chunk.fileOffset + chunk.uncompressedSize}, past the file size ${node.size}`)
      }
      const data = await readVerifiedChunk(blobs, image, chunk, options)
      await handle.write(data, 0, data.length, chunk.fileOffset)
      written += data.length
    }
    // Holes, at the end too, stay sparse.
    await handle.truncate(node.size)
  } finally {
    await handle.close()
  }
  return written
}

async function makeNode (node: RafsNode, target: string): Promise<void> {
  const args = node.type === 'fifo'
    ? [target, 'p']
    : [target, node.type === 'char' ? 'c' : 'b', String(deviceMajor(node.rdev)), String(deviceMinor(node.rdev))]
  try {
    await run('mknod', ['-m', '600', ...args])
  } catch (err: any) {
    throw new ToolFailedError(`mknod ${args.join(' ')} failed: ${String(err.stderr ?? err.message).trim()}`)
  }
}

/** Octal-escapes every byte outside a safe set, as getfattr/setfattr dump files expect. */
function escapeDumpPath (path: string): string {
  let escaped = ''
  for (const byte of Buffer.from(path, 'utf8')) {
    const char = String.fromCharCode(byte)
    escaped += /[A-Za-z0-9._\-/+,:@]/.test(char) ? char : `\\${byte.toString(8).padStart(3, '0')}`
  }
  return escaped
}

/** Sets every xattr of the tree with one `setfattr --restore` run (Node has no xattr calls). */
async function restoreXattrs (out: string, entries: ImageEntry[]): Promise<void> {
  const lines: string[] = []
  for (const { path, node } of entries) {
    if (node.xattrs.size === 0) continue
    lines.push(`# file: ${escapeDumpPath(`.${path}`)}`)
    for (const [name, value] of node.xattrs) {
      lines.push(`${escapeDumpPath(name)}=0x${Buffer.from(value).toString('hex')}`)
    }
    lines.push('')
  }
  if (lines.length === 0) return
  const dump = join(tmpdir(), `shoal-xattrs-${process.pid}-${Date.now()}.txt`)
  await writeFile(dump, lines.join('\n'))
  try {
    await run('setfattr', ['-h', `--restore=${dump}`], { cwd: out })
  } catch (err: any) {
    throw new ToolFailedError(`setfattr --restore failed: ${String(err.stderr ?? err.message).trim()}`)
  } finally {
    await rm(dump, { force: true })
  }
}
