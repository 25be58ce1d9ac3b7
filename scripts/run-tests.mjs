// Builds the workspace and runs every compiled test file with Node's test runner. Invoked by
// `npm test`, so `node` here is the workspace's Node 24. Extra arguments select test files by
// substring ("rafs", "v5.test"); arguments starting with "-" go to `node --test`.
// A type error fails the run, but the tests still run (tsc emits anyway), so one broken file
// does not hide every other result.
import { spawnSync } from 'node:child_process'
import { existsSync, globSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

// The real Nydus files live in the shared/ folder beside the checkout (as CI lays it out).
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..')
process.env.SHOAL_NYDUS_FIXTURES ??= resolve(repoRoot, '..', 'shared', 'fixtures', 'nydus')
if (!existsSync(process.env.SHOAL_NYDUS_FIXTURES)) {
  console.error(`run-tests: no Nydus fixtures at ${process.env.SHOAL_NYDUS_FIXTURES} (set SHOAL_NYDUS_FIXTURES)`)
  process.exit(1)
}

const build = spawnSync('npx', ['tsc', '-b'], { stdio: 'inherit' })
if (build.status !== 0) console.error('run-tests: the build has type errors (see above); running the tests anyway')

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
if (build.status !== 0) {
  console.error('run-tests: failing because the build has type errors')
  process.exit(1)
}
process.exit(result.status ?? 1)
