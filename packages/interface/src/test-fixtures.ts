import { resolve } from 'node:path'

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
