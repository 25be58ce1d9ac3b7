/**
 * Merges layers, in order, into one tree of RafsNodes with the OCI whiteout rules:
 * `.wh.NAME` hides NAME of lower layers, `.wh..wh..opq` hides everything lower layers put in its
 * directory, an entry replaces a lower one of another type, a directory over a directory merges.
 * Nothing here follows a symlink: a path through a symlink makes a directory in its place.
 */
import { makeDevice, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK, type RafsChunk, type RafsNode, type RafsNodeType } from '@shoal/rafs'
import { HardLinkTargetError, UnsafeLayerPathError } from './errors.js'
import { joinLayerPath, normalizeLayerPath } from './path.js'

export const WHITEOUT_PREFIX = '.wh.'
export const OPAQUE_WHITEOUT = '.wh..wh..opq'

interface TreeEntry {
  tree: TreeNode
  /** The last layer that put or touched this entry: whiteouts only hide entries from lower layers. */
  layer: number
}

interface TreeNode {
  node: RafsNode
  children?: Map<string, TreeEntry>
}

/** What one tar entry (or directory entry on disk) says about one path, once its data is chunked. */
export interface NodeSpec {
  type: RafsNodeType
  /** Permission bits (setuid, setgid, sticky included); the type bits are added from `type`. */
  mode: number
  uid: number
  gid: number
  mtime: number
  mtimeNsec: number
  xattrs: Map<string, Uint8Array>
  size?: number
  target?: string
  devMajor?: number
  devMinor?: number
  chunks?: RafsChunk[]
}

/** st_mode file-type bits of each node type. */
const TYPE_BITS: Record<RafsNodeType, number> = {
  file: S_IFREG, directory: S_IFDIR, symlink: S_IFLNK, char: S_IFCHR, block: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK
}

/** Linux new_encode_dev: how EROFS and RAFS store a device number. */
export const encodeDevice = makeDevice

/**
 * Permission bits as Linux shows them: a symlink is always 0777 (lstat and every filesystem say
 * so, whatever a tar header claims), so an image mounted by the kernel shows what `tar -x` makes.
 */
function permissionBits (spec: NodeSpec): number {
  return spec.type === 'symlink' ? 0o777 : spec.mode & 0o7777
}

function makeNode (spec: NodeSpec): RafsNode {
  const node: RafsNode = {
    ino: 0,
    type: spec.type,
    mode: TYPE_BITS[spec.type] | permissionBits(spec),
    uid: spec.uid,
    gid: spec.gid,
    size: 0,
    mtime: spec.mtime,
    mtimeNsec: spec.mtimeNsec,
    nlink: 1,
    rdev: 0,
    xattrs: spec.xattrs
  }
  if (spec.type === 'file') {
    node.size = spec.size ?? 0
    node.chunks = spec.chunks ?? []
  } else if (spec.type === 'symlink') {
    node.target = spec.target ?? ''
    node.size = Buffer.byteLength(node.target)
  } else if (spec.type === 'char' || spec.type === 'block') {
    node.rdev = encodeDevice(spec.devMajor ?? 0, spec.devMinor ?? 0)
  }
  return node
}

function implicitDirectory (): TreeNode {
  return { node: makeNode({ type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0, mtimeNsec: 0, xattrs: new Map() }), children: new Map() }
}

const encoder = new TextEncoder()

export interface MergedTree {
  root: RafsNode
  inodeCount: number
  /** Every distinct regular file node (hard links once). */
  files: RafsNode[]
}

export class LayerTree {
  private readonly root: TreeNode = implicitDirectory()
  private layer = 0

  /** Entries from now on belong to layer `index`; whiteouts hide only what lower layers put. */
  beginLayer (index: number): void {
    this.layer = index
  }

  /** True when the last component is a whiteout; the caller then calls `whiteout` and skips the body. */
  static isWhiteout (parts: readonly string[]): boolean {
    return parts.length > 0 && parts[parts.length - 1].startsWith(WHITEOUT_PREFIX)
  }

  /** Applies `.wh.NAME` or `.wh..wh..opq` at `parts`. Other `.wh..wh.*` names (aufs metadata) are dropped. */
  whiteout (parts: readonly string[]): void {
    const name = parts[parts.length - 1]
    const parent = this.find(parts.slice(0, -1))
    if (parent?.children === undefined) return
    if (name === OPAQUE_WHITEOUT) {
      this.hideLower(parent)
      return
    }
    if (name.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) return
    const hidden = name.slice(WHITEOUT_PREFIX.length)
    const entry = parent.children.get(hidden)
    if (entry !== undefined && entry.layer < this.layer) parent.children.delete(hidden)
  }

  /** Removes, recursively, what lower layers put under `dir`; what this layer put stays. */
  private hideLower (dir: TreeNode): void {
    for (const [name, entry] of dir.children ?? []) {
      if (entry.layer < this.layer) dir.children?.delete(name)
      else if (entry.tree.children !== undefined) this.hideLower(entry.tree)
    }
  }

  private find (parts: readonly string[]): TreeNode | undefined {
    let at: TreeNode | undefined = this.root
    for (const part of parts) {
      at = at?.children?.get(part)?.tree
      if (at === undefined) return undefined
    }
    return at
  }

  /** The directory at `parts`, made (or made a directory, replacing a non-directory) as needed. */
  private directoryAt (parts: readonly string[]): TreeNode {
    let at = this.root
    for (const part of parts) {
      const children = at.children as Map<string, TreeEntry>
      const existing = children.get(part)
      if (existing?.tree.children !== undefined) {
        existing.layer = this.layer
        at = existing.tree
      } else {
        const made = implicitDirectory()
        children.set(part, { tree: made, layer: this.layer })
        at = made
      }
    }
    return at
  }

  /** Adds (or replaces, or merges into) the entry at `parts`. `entryPath` names it in errors. */
  add (parts: readonly string[], spec: NodeSpec, entryPath: string): void {
    if (parts.length === 0) {
      if (spec.type !== 'directory') throw new UnsafeLayerPathError(entryPath, `the layer root is a ${spec.type}, expected a directory`)
      this.mergeDirectory(this.root, spec)
      return
    }
    const parent = this.directoryAt(parts.slice(0, -1))
    const children = parent.children as Map<string, TreeEntry>
    const name = parts[parts.length - 1]
    const existing = children.get(name)
    if (spec.type === 'directory' && existing?.tree.children !== undefined) {
      this.mergeDirectory(existing.tree, spec)
      existing.layer = this.layer
      return
    }
    const tree: TreeNode = { node: makeNode(spec) }
    if (spec.type === 'directory') tree.children = new Map()
    children.set(name, { tree, layer: this.layer })
  }

  /** A hard link at `parts` to the non-directory at `target` (as the archive names it). */
  link (parts: readonly string[], target: string, entryPath: string): void {
    const targetParts = normalizeLayerPath(target, entryPath)
    if (parts.length === 0) throw new HardLinkTargetError(entryPath, target, 'the layer root cannot be a hard link')
    const found = this.find(targetParts)
    if (found === undefined) throw new HardLinkTargetError(entryPath, target, `no entry at ${joinLayerPath(targetParts)}`)
    if (found.children !== undefined) throw new HardLinkTargetError(entryPath, target, 'the target is a directory')
    const parent = this.directoryAt(parts.slice(0, -1))
    ;(parent.children as Map<string, TreeEntry>).set(parts[parts.length - 1], { tree: found, layer: this.layer })
  }

  private mergeDirectory (dir: TreeNode, spec: NodeSpec): void {
    const node = dir.node
    node.mode = S_IFDIR | (spec.mode & 0o7777)
    node.uid = spec.uid
    node.gid = spec.gid
    node.mtime = spec.mtime
    node.mtimeNsec = spec.mtimeNsec
    node.xattrs = spec.xattrs
  }

  /**
   * The merged tree as RafsNodes: directory entries sorted by name bytes, inode numbers given
   * depth first from 1 (hard links share one), link counts as a filesystem would show them.
   */
  finish (): MergedTree {
    const files: RafsNode[] = []
    const seen = new Set<RafsNode>()
    let nextIno = 1
    const visit = (tree: TreeNode): void => {
      const node = tree.node
      if (seen.has(node)) {
        node.nlink++
        return
      }
      seen.add(node)
      node.ino = nextIno++
      node.nlink = 1
      if (node.type === 'file') files.push(node)
      if (tree.children === undefined) return
      const sorted = [...tree.children].map(([name, entry]) => ({ name, key: encoder.encode(name), entry }))
      sorted.sort((a, b) => Buffer.compare(a.key, b.key))
      node.entries = sorted.map(({ name, entry }) => ({ name, node: entry.tree.node }))
      let subdirectories = 0
      for (const { entry } of sorted) {
        if (entry.tree.children !== undefined) subdirectories++
        visit(entry.tree)
      }
      node.nlink = 2 + subdirectories
    }
    visit(this.root)
    return { root: this.root.node, inodeCount: nextIno - 1, files }
  }
}
