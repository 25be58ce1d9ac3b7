import type { RafsNode } from '@shoal/rafs'
import { UnsafeImagePathError } from './errors.js'

export interface ImageEntry {
  /** Path from the image root, starting with "/". */
  path: string
  node: RafsNode
  /** True when this entry is a further name of a file already listed (a hard link). */
  hardlink: boolean
}

/**
 * Lists every entry of the tree, each directory before what it holds, checking what a safe writer needs: names that are a
 * single path component, no duplicate names in a directory, no directory reachable twice (which
 * would also let a crafted bootstrap multiply the tree). Iterative, so depth costs no stack.
 */
export function listImage (root: RafsNode): ImageEntry[] {
  const entries: ImageEntry[] = []
  const seenDirectories = new Set<RafsNode>([root])
  const seenFiles = new Set<RafsNode>()
  const stack: Array<{ dir: RafsNode, path: string }> = [{ dir: root, path: '' }]
  while (stack.length > 0) {
    const { dir, path } = stack.pop()!
    const names = new Set<string>()
    const children: Array<{ dir: RafsNode, path: string }> = []
    for (const { name, node } of dir.entries ?? []) {
      if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
        throw new UnsafeImagePathError(`entry name ${JSON.stringify(name)} in directory '${path === '' ? '/' : path}' is not a single path component`)
      }
      if (names.has(name)) throw new UnsafeImagePathError(`directory '${path === '' ? '/' : path}' lists '${name}' twice`)
      names.add(name)
      const childPath = `${path}/${name}`
      if (node.type === 'directory') {
        if (seenDirectories.has(node)) throw new UnsafeImagePathError(`directory '${childPath}' is reachable by more than one path`)
        seenDirectories.add(node)
        entries.push({ path: childPath, node, hardlink: false })
        children.push({ dir: node, path: childPath })
      } else {
        entries.push({ path: childPath, node, hardlink: seenFiles.has(node) })
        seenFiles.add(node)
      }
    }
    // Reverse so the pre-order visits children in name order.
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i])
  }
  return entries
}
