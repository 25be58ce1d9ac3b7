// Runs every compiled test file with Node's test runner. Invoked by `npm test`, so `node` here is
// the workspace's Node 24. Extra arguments select files by substring ("rafs", "v5.test").
import { spawnSync } from 'node:child_process'
import { globSync } from 'node:fs'

const filters = process.argv.slice(2).filter(a => !a.startsWith('-'))
const flags = process.argv.slice(2).filter(a => a.startsWith('-'))
const files = globSync(['packages/*/dist/test/**/*.test.js', 'test/dist/**/*.test.js'])
  .filter(f => filters.length === 0 || filters.some(s => f.includes(s)))
  .sort()
if (files.length === 0) {
  console.error('run-tests: no test files matched')
  process.exit(1)
}
const result = spawnSync(process.execPath, ['--enable-source-maps', '--test', '--test-concurrency=2', ...flags, ...files], { stdio: 'inherit' })
process.exit(result.status ?? 1)
