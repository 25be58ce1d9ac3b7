import { createHash } from 'node:crypto'
import { lstat, readdir, readFile, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { nodeTypeOfMode } from '@shoal/rafs'
import { treeXattrs } from '@shoal/interface/test-fixtures'

export interface TreeEntry {
  type: string
  mode: number
  uid: number
  gid: number
  size?: number
  sha256?: string
  target?: string
  rdev?: number
  mtimeNs?: string
  /** Index of the hard-link group (paths sharing an inode), when nlink > 1. */
  linkGroup?: string
  xattrs?: Record<string, string>
}

export interface DescribeOptions {
  /** Compare modification times (ns) of everything but symlinks and the root. */
  mtime?: boolean
  /** Leave out xattrs whose name matches (e.g. security.selinux of the host). */
  ignoreXattr?: RegExp
}

/**
 * Everything a container could observe of a tree, path by path: type, mode, owner, size, content
 * digest, link target, device number, hard-link grouping, xattrs and optionally mtimes.
 */
export async function describeTree (root: string, options: DescribeOptions = {}): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {}
  const inodeGroups = new Map<string, string>()
  const xattrs = await treeXattrs(root)
  const pending = ['']
  while (pending.length > 0) {
    const rel = pending.pop()!
    const path = join(root, rel)
    const stat = await lstat(path, { bigint: true })
    const mode = Number(stat.mode)
    const type = nodeTypeOfMode(mode) ?? 'unknown'
    const entry: TreeEntry = { type, mode: mode & 0o7777, uid: Number(stat.uid), gid: Number(stat.gid) }
    if (type === 'file') {
      entry.size = Number(stat.size)
      entry.sha256 = createHash('sha256').update(await readFile(path)).digest('hex')
    } else if (type === 'symlink') {
      entry.target = await readlink(path)
    } else if (type === 'char' || type === 'block') {
      entry.rdev = Number(stat.rdev)
    }
    if (type !== 'directory' && stat.nlink > 1n) {
      const key = `${stat.dev}:${stat.ino}`
      if (!inodeGroups.has(key)) inodeGroups.set(key, rel)
      entry.linkGroup = inodeGroups.get(key)
    }
    if (options.mtime === true && type !== 'symlink' && rel !== '') entry.mtimeNs = String(stat.mtimeNs)
    const key = rel === '' ? '/' : `/${rel}`
    const attrs = Object.fromEntries([...(xattrs.get(rel === '' ? '.' : rel) ?? [])].filter(([name]) => options.ignoreXattr?.test(name) !== true))
    if (Object.keys(attrs).length > 0) entry.xattrs = attrs
    out[key] = entry
    if (type === 'directory') {
      for (const name of await readdir(path)) pending.push(rel === '' ? name : `${rel}/${name}`)
    }
  }
  return out
}

/** The differences between two described trees, one line each (empty when they are equal). */
export function diffTrees (actual: Record<string, TreeEntry>, expected: Record<string, TreeEntry>, limit = 40): string[] {
  const lines: string[] = []
  for (const path of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
    const a = actual[path]
    const e = expected[path]
    if (a == null) lines.push(`${path}: missing`)
    else if (e == null) lines.push(`${path}: unexpected ${a.type}`)
    else {
      for (const key of new Set([...Object.keys(e), ...Object.keys(a)]) as Set<keyof TreeEntry>) {
        const av = JSON.stringify(a[key])
        const ev = JSON.stringify(e[key])
        if (av !== ev) lines.push(`${path}: ${key} is ${av}, expected ${ev}`)
      }
    }
    if (lines.length >= limit) break
  }
  return lines
}
