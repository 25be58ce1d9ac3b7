import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Undoes getfattr's escaping of names: `\ooo` octal bytes and `\\`. */
function unescapeOctal (text: string): string {
  const bytes: number[] = []
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\' && /^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8))
      i += 3
    } else if (text[i] === '\\' && text[i + 1] === '\\') {
      bytes.push(0x5c)
      i++
    } else {
      bytes.push(...Buffer.from(text[i], 'utf8'))
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

/**
 * Every extended attribute under `dir`, by resolved absolute path, from one `getfattr` run (Node has no
 * xattr calls). Symlinks are neither followed nor dereferenced. A missing `getfattr` or a
 * filesystem without xattrs gives an empty map.
 */
export async function readTreeXattrs (dir: string): Promise<Map<string, Map<string, Uint8Array>>> {
  let stdout: string
  try {
    ({ stdout } = await run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', resolve(dir)], { maxBuffer: 512 * 1024 * 1024 }))
  } catch (err: any) {
    // getfattr exits non-zero when some file had no readable xattrs; what it printed still holds.
    if (typeof err.stdout !== 'string') return new Map()
    stdout = err.stdout
  }
  const byPath = new Map<string, Map<string, Uint8Array>>()
  let current: Map<string, Uint8Array> | undefined
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map()
      byPath.set(resolve(unescapeOctal(line.slice('# file: '.length))), current)
      continue
    }
    const eq = line.indexOf('=')
    if (current == null || eq <= 0) continue
    const value = line.slice(eq + 1)
    current.set(unescapeOctal(line.slice(0, eq)), value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex') : Buffer.alloc(0))
  }
  return byPath
}
