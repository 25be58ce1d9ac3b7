/**
 * Run as a child process: prints what lstat, reading and getfattr say about a tree, as JSON. A
 * process that serves a FUSE mount must never touch that mount synchronously itself (its event
 * loop answers the kernel), so tests look at mounts from here.
 */
import { treeXattrsSync } from '@shoal/interface/test-fixtures'
import { describeTree } from './helpers.js'

const root = process.argv[2]
if (root != null && process.argv[1]?.endsWith('tree-probe.js')) {
  const tree = describeTree(root)
  const xattrs = treeXattrsSync(root)
  process.stdout.write(JSON.stringify({
    tree: [...tree],
    xattrs: [...xattrs].map(([p, m]) => [p, [...m]])
  }))
}
