import { execFile, execFileSync } from 'node:child_process'
import { relative, resolve } from 'node:path'

/**
 * The directory of the real Nydus test vectors (`shared/fixtures/nydus`). `scripts/run-tests.mjs`
 * sets SHOAL_NYDUS_FIXTURES to the `shared/` beside the checkout, where CI and every developer have it.
 */
export function nydusFixtures (): string {
  const dir = process.env.SHOAL_NYDUS_FIXTURES
  if (dir == null || dir === '') {
    throw new Error('SHOAL_NYDUS_FIXTURES is not set: run the tests with `npm test` (scripts/run-tests.mjs sets it)')
  }
  return resolve(dir)
}

/** Extended attributes of a tree: path relative to the root ('.' for the root) → name → hex value (`0x…`). */
export type TreeXattrs = Map<string, Map<string, string>>

/** One run over the whole tree: recursive, physical walk, symlinks' own attributes, every namespace, hex values. */
function getfattrArgs (root: string): string[] {
  return ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root]
}

const GETFATTR_MAX_BUFFER = 512 * 1024 * 1024

/**
 * Undoes getfattr's quoting of paths and names: a byte that is a backslash, blank, unprintable or
 * (in names) `=` is written `\ooo` in octal; older versions wrote a backslash as `\\`.
 */
export function unescapeGetfattr (text: string): string {
  const bytes: number[] = []
  for (let i = 0; i < text.length; i++) {
    const octal = text.slice(i + 1, i + 4)
    if (text[i] === '\\' && /^[0-3][0-7]{2}$/.test(octal)) {
      bytes.push(parseInt(octal, 8))
      i += 3
    } else if (text[i] === '\\' && text[i + 1] === '\\') {
      bytes.push(0x5c)
      i++
    } else {
      bytes.push(...Buffer.from(text[i] as string, 'utf8'))
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

/**
 * Parses `getfattr -d -e hex --absolute-names` output of a run over `root` (an absolute path):
 * paths and names unescaped, paths made relative to the root ('.' for it), paths without xattrs left out.
 */
export function parseGetfattrDump (dump: string, root: string): TreeXattrs {
  const result: TreeXattrs = new Map()
  let current: Map<string, string> | undefined
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) {
      const fromRoot = relative(root, unescapeGetfattr(line.slice('# file: '.length)))
      current = new Map()
      result.set(fromRoot === '' ? '.' : fromRoot, current)
    } else if (current !== undefined && line !== '' && !line.startsWith('#')) {
      // Names escape their own `=`, so the first one ends the name; an attribute printed without a value is empty.
      const eq = line.indexOf('=')
      if (eq < 0) current.set(unescapeGetfattr(line), '0x')
      else current.set(unescapeGetfattr(line.slice(0, eq)), line.slice(eq + 1))
    }
  }
  for (const [key, names] of result) if (names.size === 0) result.delete(key)
  return result
}

/** Every extended attribute under `root` (symlinks not followed), from one `getfattr` run; rejects when getfattr fails. */
export async function treeXattrs (root: string, options: { signal?: AbortSignal } = {}): Promise<TreeXattrs> {
  const absolute = resolve(root)
  const dump = await new Promise<string>((resolve, reject) => {
    execFile('getfattr', getfattrArgs(absolute), { maxBuffer: GETFATTR_MAX_BUFFER, signal: options.signal, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err == null) resolve(stdout)
      else if (options.signal?.aborted === true) reject(err)
      else reject(new Error(`getfattr of ${absolute} failed (exit ${String(err.code)}): ${stderr.trim()}`, { cause: err }))
    })
  })
  return parseGetfattrDump(dump, absolute)
}

/** treeXattrs for a caller that must block (a probe child process, a synchronous builder); throws when getfattr fails. */
export function treeXattrsSync (root: string): TreeXattrs {
  const absolute = resolve(root)
  return parseGetfattrDump(execFileSync('getfattr', getfattrArgs(absolute), { maxBuffer: GETFATTR_MAX_BUFFER, encoding: 'utf8' }), absolute)
}
