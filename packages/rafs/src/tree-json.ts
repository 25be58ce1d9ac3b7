/**
 * An image's tree in the shape `tree -J` prints for a mounted image, as the Nydus test vectors
 * (`*.result`) hold it: the root directory named '' with its contents, then a report of counts.
 */
import type { RafsImage, RafsNode, RafsNodeType } from './model.js'

export type TreeJsonEntryType = 'file' | 'directory' | 'link' | 'char' | 'block' | 'fifo' | 'socket'

export interface TreeJsonEntry {
  type: TreeJsonEntryType
  name: string
  /** Symlinks only. */
  target?: string
  /** Directories (always, even when empty) and symlinks (always empty), as the vectors' `tree` writes them. */
  contents?: TreeJsonEntry[]
}

export interface TreeJsonReport {
  type: 'report'
  /** Directories below the root, plus symlinks that resolve to a directory. */
  directories: number
  /** Everything else: files, devices, fifos, sockets, symlinks that do not resolve to a directory. */
  files: number
}

export type TreeJson = [TreeJsonEntry, TreeJsonReport]

const TYPE_NAMES: Record<RafsNodeType, TreeJsonEntryType> = {
  file: 'file',
  directory: 'directory',
  symlink: 'link',
  char: 'char',
  block: 'block',
  fifo: 'fifo',
  socket: 'socket'
}

/** Linux's limit on symlinks followed in one lookup; past it a link counts as a file, as ELOOP makes `tree` do. */
const MAX_SYMLINK_HOPS = 40
/** Bound on path components walked, or waiting to be, while resolving one symlink (Linux's PATH_MAX is 4096 bytes). */
const MAX_RESOLVE_STEPS = 4096

/**
 * Builds the `tree -J` shape. Symlinks are resolved inside the image (an absolute target starts
 * at the image root), which is how they count when the image is the whole filesystem. Iterative, so
 * tree depth does not touch the call stack.
 */
export function treeJson (image: RafsImage): TreeJson {
  const resolver = new SymlinkResolver(image.root)
  const rootJson: TreeJsonEntry = { type: 'directory', name: '', contents: [] }
  const report: TreeJsonReport = { type: 'report', directories: 0, files: 0 }
  const stack: Array<{ dir: RafsNode, json: TreeJsonEntry }> = [{ dir: image.root, json: rootJson }]
  while (stack.length > 0) {
    const { dir, json } = stack.pop() as { dir: RafsNode, json: TreeJsonEntry }
    const contents = json.contents as TreeJsonEntry[]
    for (const entry of dir.entries ?? []) {
      const node = entry.node
      const item: TreeJsonEntry = { type: TYPE_NAMES[node.type], name: entry.name }
      if (node.type === 'directory') {
        item.contents = []
        report.directories++
        resolver.setParent(node, dir)
        stack.push({ dir: node, json: item })
      } else if (node.type === 'symlink') {
        item.target = node.target ?? ''
        item.contents = []
        if (resolver.isDirectory(dir, item.target)) report.directories++
        else report.files++
      } else {
        report.files++
      }
      contents.push(item)
    }
  }
  return [rootJson, report]
}

/**
 * Resolves symlinks inside the image. Directories have one parent each, so `..` follows a parent
 * map and no path needs to be carried around.
 */
class SymlinkResolver {
  private readonly root: RafsNode
  private readonly parentOf = new Map<RafsNode, RafsNode>()
  private readonly byName = new WeakMap<RafsNode, Map<string, RafsNode>>()

  constructor (root: RafsNode) {
    this.root = root
  }

  setParent (dir: RafsNode, parent: RafsNode): void {
    this.parentOf.set(dir, parent)
  }

  /** Whether `target`, read in directory `from`, names a directory of the image. */
  isDirectory (from: RafsNode, target: string): boolean {
    let dir = target.startsWith('/') ? this.root : from
    // Components still to walk, the next one last.
    const pending = splitPath(target).reverse()
    let hops = 0
    for (let steps = 0; pending.length > 0; steps++) {
      if (steps > MAX_RESOLVE_STEPS) return false
      const part = pending.pop() as string
      if (part === '.') continue
      if (part === '..') {
        dir = this.parentOf.get(dir) ?? this.root
        continue
      }
      const child = this.lookup(dir, part)
      if (child === undefined) return false
      if (child.type === 'symlink') {
        if (++hops > MAX_SYMLINK_HOPS) return false
        const linkTarget = child.target ?? ''
        if (linkTarget.startsWith('/')) dir = this.root
        for (const linkPart of splitPath(linkTarget).reverse()) pending.push(linkPart)
        if (pending.length > MAX_RESOLVE_STEPS) return false
        continue
      }
      if (child.type !== 'directory') return false
      this.parentOf.set(child, dir)
      dir = child
    }
    return true
  }

  private lookup (dir: RafsNode, name: string): RafsNode | undefined {
    let names = this.byName.get(dir)
    if (names === undefined) {
      names = new Map((dir.entries ?? []).map(e => [e.name, e.node]))
      this.byName.set(dir, names)
    }
    return names.get(name)
  }
}

function splitPath (path: string): string[] {
  return path.split('/').filter(part => part.length > 0)
}
