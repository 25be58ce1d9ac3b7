import { imageStats, treeJson } from '@shoal/rafs'
import type { Command } from '../command.js'
import { openImage, registryOptions, storeOptionsOf } from '../image-ref.js'

export const inspect: Command = {
  name: 'inspect',
  summary: 'print what an image holds: its tree, or counts and format',
  args: 'IMAGE',
  description: 'IMAGE is bootstrap:PATH (a RAFS v5 or v6 bootstrap file), or a Nydus image as docker://HOST/REPO[:TAG] or oci:DIR[:TAG].\nWith neither --tree nor --stats, --stats is implied.',
  positionals: { min: 1, max: 1 },
  options: {
    ...registryOptions,
    tree: { type: 'boolean', description: 'print the directory tree (as `tree -J` with --json)' },
    stats: { type: 'boolean', description: 'print counts, format version, compressor, digester, chunk size' },
    json: { type: 'boolean', description: 'print JSON' }
  },
  async run ({ positionals, values, stdout, signal }) {
    const { image, close } = await openImage(positionals[0], { signal, ...storeOptionsOf(values) })
    await close()
    const json = values.json === true
    if (values.tree === true) {
      const tree = treeJson(image)
      stdout.write(json ? `${JSON.stringify(tree, null, 2)}\n` : renderTree(tree))
    }
    if (values.stats === true || values.tree !== true) {
      const stats = imageStats(image)
      if (json) {
        stdout.write(`${JSON.stringify(stats, null, 2)}\n`)
      } else {
        const width = Math.max(...Object.keys(stats).map(k => k.length))
        stdout.write(Object.entries(stats).map(([k, v]) => `${k.padEnd(width)}  ${String(v)}`).join('\n') + '\n')
      }
    }
    return 0
  }
}

interface TreeJsonNode { type: string, name: string, target?: string, contents?: TreeJsonNode[] }

/** The tree as `tree` prints it, from the `tree -J` shape. */
function renderTree (tree: unknown[]): string {
  const lines: string[] = []
  const root = tree[0] as TreeJsonNode
  lines.push(root.name === '' ? '/' : root.name)
  const stack: Array<{ node: TreeJsonNode, prefix: string, last: boolean }> = []
  const pushChildren = (node: TreeJsonNode, prefix: string): void => {
    const children = node.type === 'directory' ? node.contents ?? [] : []
    for (let i = children.length - 1; i >= 0; i--) stack.push({ node: children[i], prefix, last: i === children.length - 1 })
  }
  pushChildren(root, '')
  while (stack.length > 0) {
    const { node, prefix, last } = stack.pop()!
    lines.push(`${prefix}${last ? '└── ' : '├── '}${node.name}${node.target != null ? ` -> ${node.target}` : ''}`)
    pushChildren(node, prefix + (last ? '    ' : '│   '))
  }
  return lines.join('\n') + '\n'
}
