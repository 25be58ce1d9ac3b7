/**
 * Real OCI images for end-to-end tests, built with Debian's umoci, GNU tar and skopeo: a busybox
 * image, a multi-layer image with whiteouts, an opaque directory, hard links, symlinks, xattrs and
 * device nodes, and a fixture tar as the single layer of a hand-written layout. Plus the tree
 * comparison that says whether an unpacked Nydus image equals `umoci unpack` of its source.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmod, copyFile, link, lstat, mkdir, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER_TAR, MEDIA_TYPE_OCI_MANIFEST } from '@shoal/interface'
import { treeXattrs } from '@shoal/interface/test-fixtures'
import { ociLayout } from '@shoal/oci-layout'

export interface RunOptions { cwd?: string, timeoutMs?: number, input?: string }

/** Runs a program, bounded by a timeout; rejects with its stderr when it fails. */
export async function run (command: string, args: string[], options: RunOptions = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: [options.input != null ? 'pipe' : 'ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 120_000 })
    let stdout = ''
    let stderr = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    if (child.stdin != null) {
      child.stdin.on('error', () => {})
      child.stdin.end(options.input)
    }
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (code === 0) resolve(stdout)
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}: ${stderr.trim()}`))
    })
  })
}

const FIXED_TIME = new Date('2024-03-01T12:00:00Z')

/** A new image `layout:tag` with an empty rootfs unpacked in `bundle`. */
async function newImage (layout: string, tag: string, bundle: string): Promise<void> {
  await run('umoci', ['init', '--layout', layout]).catch(async err => {
    // A layout holding other images already is fine.
    if (!String(err).includes('exist')) throw err
  })
  await run('umoci', ['new', '--image', `${layout}:${tag}`])
  await run('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle])
}

/** busybox-static with a few applets as hard links and symlinks, one layer, `sh` as its command. */
export async function buildBusyboxImage (layout: string, tag: string, work: string): Promise<void> {
  const bundle = join(work, `bundle-${tag}`)
  await newImage(layout, tag, bundle)
  const rootfs = join(bundle, 'rootfs')
  await mkdir(join(rootfs, 'bin'), { recursive: true })
  await mkdir(join(rootfs, 'etc'), { recursive: true })
  await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'))
  await chmod(join(rootfs, 'bin', 'busybox'), 0o755)
  for (const applet of ['sh', 'ls', 'cat']) await link(join(rootfs, 'bin', 'busybox'), join(rootfs, 'bin', applet))
  for (const applet of ['echo', 'true']) await symlink('busybox', join(rootfs, 'bin', applet))
  await writeFile(join(rootfs, 'etc', 'motd'), 'hello from a busybox image\n')
  await run('umoci', ['repack', '--image', `${layout}:${tag}`, bundle])
  await run('umoci', ['config', '--image', `${layout}:${tag}`, '--config.cmd', 'sh'])
  await rm(bundle, { recursive: true, force: true })
}

function pseudoRandom (size: number, seed: number): Buffer {
  const out = Buffer.alloc(size)
  let block = createHash('sha256').update(`seed-${seed}`).digest()
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset)
    block = createHash('sha256').update(block).digest()
  }
  return out
}

/**
 * Three layers: umoci repacks of a rootfs (files, hard links, symlinks, xattrs set with setfattr,
 * then a second state with deletions → whiteouts), and a GNU tar layer holding an opaque
 * whiteout that replaces a directory, device nodes and a fifo (added with `umoci raw add-layer`).
 */
export async function buildMultiLayerImage (layout: string, tag: string, work: string): Promise<void> {
  const bundle = join(work, `bundle-${tag}`)
  await newImage(layout, tag, bundle)
  const rootfs = join(bundle, 'rootfs')
  for (const dir of ['etc', 'data', 'olddir', 'bin']) await mkdir(join(rootfs, dir), { recursive: true })
  await writeFile(join(rootfs, 'etc', 'hello'), 'hello\n')
  await writeFile(join(rootfs, 'data', 'keep.txt'), 'kept across layers\n')
  await writeFile(join(rootfs, 'data', 'gone.txt'), 'deleted by the second layer\n')
  await writeFile(join(rootfs, 'olddir', 'a'), 'a from layer 1\n')
  await writeFile(join(rootfs, 'olddir', 'b'), 'b from layer 1\n')
  // Several chunks at 1 MiB, and a tail.
  await writeFile(join(rootfs, 'bin', 'tool'), pseudoRandom(2 * 1024 * 1024 + 12345, 1))
  await chmod(join(rootfs, 'bin', 'tool'), 0o4755)
  await link(join(rootfs, 'data', 'keep.txt'), join(rootfs, 'data', 'hl1'))
  await symlink('keep.txt', join(rootfs, 'data', 'link'))
  await writeFile(join(rootfs, 'data', 'empty'), '')
  await run('setfattr', ['-n', 'user.shoal', '-v', 'layer-one', join(rootfs, 'data', 'keep.txt')])
  await run('setfattr', ['-n', 'user.dir', '-v', '0x00ff10', join(rootfs, 'olddir')])
  await run('chown', ['1234:5678', join(rootfs, 'data', 'keep.txt')])
  await utimes(join(rootfs, 'etc', 'hello'), FIXED_TIME, FIXED_TIME)
  // --refresh-bundle: the next repack diffs against this layer, not the empty image.
  await run('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:${tag}`, bundle])

  await rm(join(rootfs, 'data', 'gone.txt'))
  await writeFile(join(rootfs, 'data', 'new.txt'), 'added by layer 2\n')
  await link(join(rootfs, 'data', 'new.txt'), join(rootfs, 'data', 'hl-new'))
  await symlink('/etc/hello', join(rootfs, 'data', 'abslink'))
  await run('setfattr', ['-n', 'user.second', '-v', 'two', join(rootfs, 'data', 'new.txt')])
  await writeFile(join(rootfs, 'bin', 'tool2'), Buffer.concat([pseudoRandom(1024 * 1024, 1), pseudoRandom(70000, 2)]))
  await run('umoci', ['repack', '--image', `${layout}:${tag}`, bundle])
  await rm(bundle, { recursive: true, force: true })

  const layer3 = join(work, `layer3-${tag}`)
  await mkdir(join(layer3, 'olddir'), { recursive: true })
  await mkdir(join(layer3, 'dev'), { recursive: true })
  await writeFile(join(layer3, 'olddir', '.wh..wh..opq'), '')
  await writeFile(join(layer3, 'olddir', 'c'), 'c replaces a and b\n')
  await writeFile(join(layer3, 'data', '.wh.link'), '').catch(async () => {
    await mkdir(join(layer3, 'data'))
    await writeFile(join(layer3, 'data', '.wh.link'), '')
  })
  await run('mknod', ['-m', '0666', join(layer3, 'dev', 'null'), 'c', '1', '3'])
  await run('mknod', ['-m', '0660', join(layer3, 'dev', 'loop9'), 'b', '7', '9'])
  await run('mkfifo', ['-m', '0600', join(layer3, 'dev', 'fifo')])
  await run('setfattr', ['-n', 'user.opaque', '-v', 'yes', join(layer3, 'olddir', 'c')])
  const tarPath = join(work, `layer3-${tag}.tar`)
  await run('tar', ['--xattrs', '--xattrs-include=user.*', '--numeric-owner', '-C', layer3, '-cf', tarPath, 'olddir', 'dev', 'data'])
  await run('umoci', ['raw', 'add-layer', '--image', `${layout}:${tag}`, tarPath])
  await rm(layer3, { recursive: true, force: true })
  await rm(tarPath, { force: true })
}

/** A layout whose one image has `tarPath` as its only (uncompressed) layer, written by hand. */
export async function buildTarLayerImage (layoutDir: string, tag: string, tarPath: string, work: string): Promise<void> {
  const store = ociLayout({ path: layoutDir })
  const tar = await readFile(tarPath)
  const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`
  const layer = await store.putBlob(tarPath)
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created_by: 'hand-written test layout' }]
  }))
  const configPath = join(work, `config-${tag}.json`)
  await writeFile(configPath, config)
  const configPut = await store.putBlob(configPath)
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: configPut.digest, size: configPut.size },
    layers: [{ mediaType: MEDIA_TYPE_OCI_LAYER_TAR, digest: layer.digest, size: layer.size }]
  }
  await store.putManifest(tag, Buffer.from(JSON.stringify(manifest)), MEDIA_TYPE_OCI_MANIFEST)
}

/** `skopeo copy oci:LAYOUT:TAG docker://REGISTRY/REPO:TAG` over plain HTTP. */
export async function pushWithSkopeo (layout: string, tag: string, destination: string, creds?: string): Promise<void> {
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...(creds != null ? ['--dest-creds', creds] : []), `oci:${layout}:${tag}`, destination], { timeoutMs: 120_000 })
}

/** The reference tree: `umoci unpack` of the source image; returns the rootfs path. */
export async function umociUnpack (layout: string, tag: string, bundle: string): Promise<string> {
  await run('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle])
  return join(bundle, 'rootfs')
}

export interface TreeEntry {
  type: string
  mode: number
  uid: number
  gid: number
  /** Whole seconds and nanoseconds of the modification time. */
  mtime: string
  size?: number
  sha256?: string
  target?: string
  rdev?: number
  xattrs: Record<string, string>
  /** Other paths sharing this inode (hard links), sorted; absent when there are none. */
  links?: string[]
  nlink: number
}

/** Every entry under `root` (the root itself as '/'), by path: what `compareTrees` compares. */
export async function describeTree (root: string): Promise<Map<string, TreeEntry>> {
  const entries = new Map<string, TreeEntry>()
  const byInode = new Map<number, string[]>()
  const xattrs = await treeXattrs(root)
  const pending: string[] = ['']
  for (let steps = 0; pending.length > 0 && steps < 1_000_000; steps++) {
    const rel = pending.pop() as string
    const path = join(root, rel)
    const info = await lstat(path, { bigint: true })
    const type = info.isFile() ? 'file' : info.isDirectory() ? 'dir' : info.isSymbolicLink() ? 'symlink' : info.isCharacterDevice() ? 'char' : info.isBlockDevice() ? 'block' : info.isFIFO() ? 'fifo' : 'socket'
    const key = rel === '' ? '/' : `/${rel}`
    const entry: TreeEntry = {
      type,
      mode: Number(info.mode & 0o7777n),
      uid: Number(info.uid),
      gid: Number(info.gid),
      mtime: `${info.mtimeNs / 1_000_000_000n}.${String(info.mtimeNs % 1_000_000_000n).padStart(9, '0')}`,
      xattrs: Object.fromEntries(xattrs.get(rel === '' ? '.' : rel) ?? []),
      nlink: Number(info.nlink)
    }
    if (type === 'file') {
      entry.size = Number(info.size)
      entry.sha256 = createHash('sha256').update(await readFile(path)).digest('hex')
      const group = byInode.get(Number(info.ino)) ?? []
      group.push(key)
      byInode.set(Number(info.ino), group)
    }
    if (type === 'symlink') entry.target = await readlink(path)
    if (type === 'char' || type === 'block') entry.rdev = Number(info.rdev)
    entries.set(key, entry)
    if (type === 'dir') for (const name of await readdir(path)) pending.push(rel === '' ? name : `${rel}/${name}`)
  }
  for (const group of byInode.values()) {
    if (group.length < 2) continue
    for (const path of group) (entries.get(path) as TreeEntry).links = group.filter(p => p !== path).sort()
  }
  return entries
}

export interface CompareOptions {
  /** Digits of the mtime's fraction of a second both sides keep (9, ns, by default; 3 for ms, as FUSE mode shows them). */
  mtimeDigits?: number
  /** Compare the link count of everything but directories (a mount must show what the tree holds). */
  nlink?: boolean
}

/** Differences between two trees, one line each; empty when they are equal. Root times are not compared. */
export async function compareTrees (expectedRoot: string, actualRoot: string, options: CompareOptions = {}): Promise<string[]> {
  const expected = await describeTree(expectedRoot)
  const actual = await describeTree(actualRoot)
  const problems: string[] = []
  const digits = options.mtimeDigits ?? 9
  const mtimeOf = (entry: TreeEntry): string => entry.mtime.slice(0, entry.mtime.length - 9 + digits)
  for (const [path, want] of expected) {
    const got = actual.get(path)
    if (got == null) { problems.push(`${path}: missing`); continue }
    const a = { ...want, mtime: path === '/' ? '' : mtimeOf(want) }
    const b = { ...got, mtime: path === '/' ? '' : mtimeOf(got) }
    if (options.nlink === true && a.type !== 'dir' && a.nlink !== b.nlink) problems.push(`${path}: nlink ${b.nlink}, expected ${a.nlink}`)
    for (const field of ['type', 'mode', 'uid', 'gid', 'mtime', 'size', 'sha256', 'target', 'rdev'] as const) {
      if (a[field] !== b[field]) problems.push(`${path}: ${field} ${String(b[field])}, expected ${String(a[field])}`)
    }
    if (JSON.stringify(a.xattrs) !== JSON.stringify(b.xattrs)) problems.push(`${path}: xattrs ${JSON.stringify(b.xattrs)}, expected ${JSON.stringify(a.xattrs)}`)
    if (JSON.stringify(a.links) !== JSON.stringify(b.links)) problems.push(`${path}: hard links ${JSON.stringify(b.links)}, expected ${JSON.stringify(a.links)}`)
  }
  for (const path of actual.keys()) if (!expected.has(path)) problems.push(`${path}: not expected`)
  return problems
}

export interface HandTarEntry { name: string, type?: 'file' | 'dir' | 'symlink' | 'hardlink', body?: string, linkname?: string, mode?: number }

/** A ustar archive written entry by entry, names as given: for layers no tar tool would make (`../x`). */
export function handTar (entries: HandTarEntry[]): Buffer {
  const blocks: Buffer[] = []
  for (const entry of entries) {
    const body = Buffer.from(entry.body ?? '')
    const header = Buffer.alloc(512)
    header.write(entry.name, 0, 100, 'utf8')
    const octal = (offset: number, width: number, value: number): void => { header.write(value.toString(8).padStart(width - 1, '0') + '\u0000', offset, width, 'ascii') }
    octal(100, 8, entry.mode ?? (entry.type === 'dir' ? 0o755 : 0o644))
    octal(108, 8, 0)
    octal(116, 8, 0)
    octal(124, 12, entry.type == null || entry.type === 'file' ? body.length : 0)
    octal(136, 12, 1700000000)
    header.write({ file: '0', hardlink: '1', symlink: '2', dir: '5' }[entry.type ?? 'file'], 156, 1, 'ascii')
    if (entry.linkname != null) header.write(entry.linkname, 157, 100, 'utf8')
    header.write('ustar\u000000', 257, 8, 'ascii')
    header.fill(0x20, 148, 156)
    let sum = 0
    for (const byte of header) sum += byte
    header.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 8, 'ascii')
    blocks.push(header)
    if (entry.type == null || entry.type === 'file') blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

/** A one-layer image in an OCI layout from a layer blob's bytes (any compression), with a matching config. */
export async function buildLayerBytesImage (layoutDir: string, tag: string, layer: Uint8Array, work: string, mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip'): Promise<{ layerDigest: string }> {
  const path = join(work, `layer-${tag}`)
  await writeFile(path, layer)
  const store = ociLayout({ path: layoutDir })
  const put = await store.putBlob(path)
  const configPath = join(work, `config-${tag}.json`)
  await writeFile(configPath, JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [put.digest] } }))
  const config = await store.putBlob(configPath)
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: config.digest, size: config.size },
    layers: [{ mediaType, digest: put.digest, size: put.size }]
  }
  await store.putManifest(tag, Buffer.from(JSON.stringify(manifest)), MEDIA_TYPE_OCI_MANIFEST)
  return { layerDigest: put.digest }
}

/** Files under a registry's storage (blobs and repositories), to see whether a push left anything. */
export async function registryFiles (storage: string): Promise<string[]> {
  const out = await run('find', [storage, '-type', 'f']).catch(() => '')
  return out.split('\n').filter(l => l !== '').sort()
}
