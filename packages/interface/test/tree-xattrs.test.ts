import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseGetfattrDump, treeXattrs, treeXattrsSync } from '../src/test-fixtures.js'

test('parseGetfattrDump unescapes paths and names, keys paths from the root and drops paths without xattrs', () => {
  const dump = [
    '# file: /r/o\\157t',
    'user.root=0x72',
    '',
    '# file: /r/o\\157t/new\\012line',
    'user.we ird\\075x\\134y=0x68',
    'user.empty=0x',
    'user.bare',
    '',
    '# file: /r/o\\157t/old\\\\slash',
    'trusted.t=0x01',
    '',
    '# file: /r/o\\157t/nothing',
    ''
  ].join('\n')
  assert.deepEqual(parseGetfattrDump(dump, '/r/oot'), new Map([
    ['.', new Map([['user.root', '0x72']])],
    ['new\nline', new Map([['user.we ird=x\\y', '0x68'], ['user.empty', '0x'], ['user.bare', '0x']])],
    ['old\\slash', new Map([['trusted.t', '0x01']])]
  ]))
})

test('treeXattrs reads a real tree: escaped names, empty values, no symlink followed; the sync twin agrees', async (t) => {
  if (spawnSync('sh', ['-c', 'command -v getfattr && command -v setfattr']).status !== 0) {
    t.skip('attr (getfattr, setfattr) is not installed')
    return
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-xattrs-'))
  try {
    fs.mkdirSync(path.join(root, 'd ir'))
    fs.writeFileSync(path.join(root, 'd ir', 'f=1'), '')
    fs.writeFileSync(path.join(root, 'tab\tname'), '')
    fs.writeFileSync(path.join(root, 'bare'), '')
    fs.symlinkSync('d ir/f=1', path.join(root, 'link'))
    const set = (name: string, value: string, file: string): void => {
      const r = spawnSync('setfattr', ['-n', name, '-v', value, file])
      assert.equal(r.status, 0, r.stderr.toString())
    }
    set('user.we ird=x\\y', '0x6869', path.join(root, 'd ir', 'f=1'))
    set('user.empty', '""', path.join(root, 'd ir', 'f=1'))
    set('user.tab', '0x0a', path.join(root, 'tab\tname'))
    const xattrs = await treeXattrs(root)
    assert.deepEqual(xattrs, new Map([
      ['d ir/f=1', new Map([['user.we ird=x\\y', '0x6869'], ['user.empty', '0x']])],
      ['tab\tname', new Map([['user.tab', '0x0a']])]
    ]))
    assert.deepEqual(treeXattrsSync(root), xattrs)
    await assert.rejects(treeXattrs(path.join(root, 'missing')), /getfattr of .*missing failed \(exit 1\)/)
    const aborted = new AbortController()
    aborted.abort()
    await assert.rejects(treeXattrs(root, { signal: aborted.signal }), { name: 'AbortError' })
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})
