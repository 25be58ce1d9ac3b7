/**
 * Test support: a source tree with every kind of inode, a Nydus image of it, a stand-in for
 * blobDevice (verified chunks straight from the blob directory), tree descriptions to compare,
 * and a cleanup that leaves no mount or loop device behind even when a test fails.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { blobDirectory, readVerifiedChunk } from '@shoal/blob-device'
import { buildFromDirectory, type BuildResult } from '@shoal/builder'
import { nodeTypeOfMode, walk, type RafsChunk, type RafsImage, type RafsNode } from '@shoal/rafs'
import type { AbortOptions } from '@shoal/interface'
import type { TreeXattrs } from '@shoal/interface/test-fixtures'
import type { MountDevice } from '../src/index.js'

export const CHUNK_SIZE = 64 * 1024

export function have (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

/** Why these tests cannot run here, or undefined when they can. */
export function cannotMount (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root'
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse'
  if (!have('getfattr') || !have('setfattr')) return 'attr (getfattr) is not installed'
  if (!fs.existsSync('/bin/busybox')) return 'busybox-static is not installed'
  return undefined
}

/** A rootfs with busybox and its applet links, plus xattrs, hard links, symlinks, devices, a multi-chunk file and holes. */
export function makeSourceTree (root: string): void {
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true })
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'))
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755)
  const applets = execFileSync('/bin/busybox', ['--list']).toString().trim().split('\n')
  for (const applet of applets) {
    if (applet === 'busybox' || applet.includes('/')) continue
    fs.symlinkSync('busybox', path.join(root, 'bin', applet))
  }
  for (const dir of ['etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'data']) fs.mkdirSync(path.join(root, dir), { recursive: true })
  fs.chmodSync(path.join(root, 'tmp'), 0o1777)
  fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n')
  fs.writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n')
  const d = path.join(root, 'data')
  fs.writeFileSync(path.join(d, 'hello.txt'), 'hello from shoal\n')
  fs.writeFileSync(path.join(d, 'empty'), '')
  const big = Buffer.alloc(5 * CHUNK_SIZE + 777)
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24
  fs.writeFileSync(path.join(d, 'multi-chunk'), big)
  fs.writeFileSync(path.join(d, 'other-file'), 'this file shares no chunk with multi-chunk\n'.repeat(100))
  // A sparse file: data, a hole of several chunks, data, and a hole at the end.
  const sparse = fs.openSync(path.join(d, 'sparse'), 'w')
  fs.writeSync(sparse, Buffer.alloc(1000, 0x61), 0, 1000, 0)
  fs.writeSync(sparse, Buffer.alloc(3000, 0x62), 0, 3000, 8 * CHUNK_SIZE)
  fs.ftruncateSync(sparse, 12 * CHUNK_SIZE)
  fs.closeSync(sparse)
  fs.linkSync(path.join(d, 'hello.txt'), path.join(d, 'hard-link'))
  fs.symlinkSync('hello.txt', path.join(d, 'sym-link'))
  fs.symlinkSync('/nowhere/at/all', path.join(d, 'dangling'))
  execFileSync('mknod', [path.join(d, 'null'), 'c', '1', '3'])
  execFileSync('mknod', [path.join(d, 'blockdev'), 'b', '259', '300000'])
  execFileSync('mkfifo', [path.join(d, 'fifo')])
  fs.writeFileSync(path.join(d, 'owned'), 'not root\'s')
  fs.chownSync(path.join(d, 'owned'), 1234, 5678)
  fs.chmodSync(path.join(d, 'owned'), 0o4750)
  fs.utimesSync(path.join(d, 'owned'), 1_600_000_000, 1_500_000_000.25)
  execFileSync('setfattr', ['-n', 'user.comment', '-v', 'an attribute', path.join(d, 'hello.txt')])
  execFileSync('setfattr', ['-n', 'user.big', '-v', '0x' + 'ab'.repeat(1000), path.join(d, 'multi-chunk')])
  execFileSync('setfattr', ['-n', 'security.capability', '-v', '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=', path.join(d, 'owned')])
  execFileSync('setfattr', ['-n', 'trusted.shoal', '-v', 'on a directory', d])
}

/** Builds `src` into `out/bootstrap` and `out/blobs/<id>`. */
export async function buildImageOf (src: string, out: string, compressor: 'zstd' | 'none' | 'lz4_block' = 'zstd'): Promise<BuildResult & { bootstrapPath: string, blobDir: string }> {
  const blobDir = path.join(out, 'blobs')
  fs.mkdirSync(blobDir, { recursive: true })
  let n = 0
  const result = await buildFromDirectory(src, {
    chunkSize: CHUNK_SIZE,
    compressor,
    blobSink: () => {
      const tmp = path.join(blobDir, `.partial-${n++}`)
      const fd = fs.openSync(tmp, 'w')
      return {
        write: bytes => { fs.writeSync(fd, bytes) },
        close: blob => { fs.closeSync(fd); fs.renameSync(tmp, path.join(blobDir, blob.blobId)) },
        discard: () => { fs.closeSync(fd); fs.rmSync(tmp, { force: true }) }
      }
    }
  })
  const bootstrapPath = path.join(out, 'bootstrap')
  fs.writeFileSync(bootstrapPath, result.bootstrap)
  return { ...result, bootstrapPath, blobDir }
}

/**
 * Stand-in for blobDevice until it lands: every chunk read from the blob directory and verified
 * (readVerifiedChunk), files and blob address spaces assembled from chunks, zeros in holes.
 */
export function localDevice (image: RafsImage, blobDir: string): MountDevice & { close: () => Promise<void>, chunkReads: number } {
  const backend = blobDirectory({ path: blobDir })
  const chunksOfBlob = new Map<number, RafsChunk[]>()
  const seen = new Set<string>()
  walk(image.root, (_p, node) => {
    for (const c of node.chunks ?? []) {
      const key = `${c.blobIndex}:${c.index}`
      if (seen.has(key)) continue
      seen.add(key)
      const list = chunksOfBlob.get(c.blobIndex) ?? []
      list.push(c)
      chunksOfBlob.set(c.blobIndex, list)
    }
  })
  for (const list of chunksOfBlob.values()) list.sort((a, b) => a.uncompressedOffset - b.uncompressedOffset)
  const device = {
    image,
    chunkReads: 0,
    async readFile (node: RafsNode, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
      const end = Math.min(node.size, offset + length)
      const out = new Uint8Array(Math.max(0, end - offset))
      for (const c of node.chunks ?? []) {
        const from = Math.max(offset, c.fileOffset)
        const to = Math.min(end, c.fileOffset + c.uncompressedSize)
        if (from >= to) continue
        device.chunkReads++
        const bytes = await readVerifiedChunk(backend, image, c, options)
        out.set(bytes.subarray(from - c.fileOffset, to - c.fileOffset), from - offset)
      }
      return out
    },
    async readBlob (blobIndex: number, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
      const out = new Uint8Array(length)
      for (const c of chunksOfBlob.get(blobIndex) ?? []) {
        const from = Math.max(offset, c.uncompressedOffset)
        const to = Math.min(offset + length, c.uncompressedOffset + c.uncompressedSize)
        if (from >= to) continue
        device.chunkReads++
        const bytes = await readVerifiedChunk(backend, image, c, options)
        out.set(bytes.subarray(from - c.uncompressedOffset, to - c.uncompressedOffset), from - offset)
      }
      return out
    },
    stats: () => ({ bytesBySource: {} }),
    close: async () => { await backend.close() }
  }
  return device
}

export interface Seen { type: string, mode: number, uid: number, gid: number, size: number, mtimeMs: number, nlink: number, rdev: string, ino: string, sha256?: string, target?: string, blocks: number }

/** What lstat and reading say about every entry of a tree, by relative path. */
export function describeTree (root: string): Map<string, Seen> {
  const out = new Map<string, Seen>()
  const stack = ['']
  while (stack.length > 0) {
    const rel = stack.pop() as string
    const abs = rel === '' ? root : path.join(root, rel)
    const st = fs.lstatSync(abs, { bigint: true })
    const type = nodeTypeOfMode(Number(st.mode)) ?? '?'
    const seen: Seen = {
      type,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'directory' ? 0 : Number(st.size),
      mtimeMs: Number(st.mtimeNs / 1_000_000n),
      nlink: Number(st.nlink),
      rdev: st.rdev.toString(),
      ino: st.ino.toString(),
      blocks: Number(st.blocks)
    }
    if (type === 'file') seen.sha256 = createHash('sha256').update(fs.readFileSync(abs)).digest('hex')
    if (type === 'symlink') seen.target = fs.readlinkSync(abs)
    out.set(rel === '' ? '.' : rel, seen)
    if (type === 'directory') for (const name of fs.readdirSync(abs)) stack.push(rel === '' ? name : `${rel}/${name}`)
  }
  return out
}

/** Groups of paths sharing an inode number (hard links), sorted. */
export function linkGroups (tree: Map<string, Seen>): string[][] {
  const groups = new Map<string, string[]>()
  for (const [p, s] of tree) if (s.type !== 'directory') groups.set(s.ino, [...(groups.get(s.ino) ?? []), p])
  return [...groups.values()].filter(g => g.length > 1).map(g => g.sort()).sort()
}

/** Mounts (innermost first) and loop devices that belong to `work`, so a failed test leaves nothing. */
export function cleanupUnder (work: string): void {
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map(l => l.split(' ')[1]).filter(t => t != null && t.startsWith(work))
  for (const target of mounts.reverse()) {
    spawnSync('umount', ['-l', target])
    spawnSync('fusermount', ['-uz', target])
  }
  const loops = spawnSync('losetup', ['-J', '-l']).stdout.toString()
  if (loops.trim() !== '') {
    for (const dev of JSON.parse(loops).loopdevices ?? []) {
      if (typeof dev['back-file'] === 'string' && dev['back-file'].startsWith(work)) spawnSync('losetup', ['-d', dev.name])
    }
  }
}

/** Mount targets and loop devices under `work` that are still there. */
export function leftovers (work: string): string[] {
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map(l => l.split(' ')[1]).filter(t => t != null && t.startsWith(work))
  const loops = spawnSync('losetup', ['-J', '-l']).stdout.toString()
  const devices = loops.trim() === '' ? [] : (JSON.parse(loops).loopdevices ?? []).filter((d: any) => String(d['back-file'] ?? '').startsWith(work)).map((d: any) => String(d.name))
  return [...mounts, ...devices]
}

/** describeTree and treeXattrs (@shoal/interface/test-fixtures) of a mount, run in a child process (see tree-probe.ts). */
export async function probeTree (root: string): Promise<{ tree: Map<string, Seen>, xattrs: TreeXattrs }> {
  const probe = fileURLToPath(new URL('./tree-probe.js', import.meta.url))
  const out = await execAsync(process.execPath, [probe, root])
  const parsed = JSON.parse(out.stdout)
  return { tree: new Map(parsed.tree), xattrs: new Map(parsed.xattrs.map(([p, m]: [string, Array<[string, string]>]) => [p, new Map(m)])) }
}

/**
 * A child process, without blocking this event loop (which may be serving the mount it reads).
 * The command is exec'd by a host shell: libuv's spawn blocks the event loop until exec is done,
 * so a process serving a FUSE mount deadlocks spawning a binary that lives on that mount.
 */
export async function execAsync (command: string, args: string[], input?: string): Promise<{ status: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    const child = execFile('/bin/sh', ['-c', 'exec "$0" "$@"', command, ...args], { maxBuffer: 256 << 20, timeout: 120_000 }, (err: any, stdout, stderr) => {
      resolve({ status: err == null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout: String(stdout), stderr: String(stderr) })
    })
    if (input != null) child.stdin?.end(input)
  })
}
