/**
 * Starts a real registry (Debian's docker-registry, CNCF distribution 2.8) for tests: a config in a
 * temp dir, storage in that dir, 127.0.0.1 on a free port, optional htpasswd auth. Other packages'
 * end-to-end tests import it as '@shoal/registry/test/registry-server'.
 *
 *   const server = await startRegistry({ auth: true })
 *   // server.registry is '127.0.0.1:PORT'; push with skopeo --dest-tls-verify=false or the client
 *   await server.stop()
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { dockerRegistryConfig } from '../src/index.js'

export interface StartRegistryOptions {
  /** htpasswd auth: `true` for the built-in user below, or a user of your own (needs `htpasswd`, apache2-utils). */
  auth?: boolean | { username: string, password: string }
  /** The binary; default docker-registry on PATH. */
  command?: string
  /** How long to wait for /v2/ to answer. Default 10 s. */
  startTimeoutMs?: number
}

export interface RunningRegistry {
  /** `127.0.0.1:PORT`, as it goes in a reference (`docker://127.0.0.1:PORT/repo:tag`). */
  registry: string
  /** `http://127.0.0.1:PORT`. */
  url: string
  port: number
  /** Temp dir holding config.yml, htpasswd and the storage under data/. */
  dir: string
  username?: string
  password?: string
  /** Everything the registry wrote to stdout and stderr, for failing tests to print. */
  output(): string
  /** Kills the registry and deletes its temp dir. Safe to call twice. */
  stop(): Promise<void>
}

/** The built-in test user; its bcrypt hash is precomputed so tests need no htpasswd binary. */
export const TEST_USERNAME = 'shoal'
export const TEST_PASSWORD = 'sh0al-pass'
const TEST_HTPASSWD = 'shoal:$2y$05$Mkpt5EBgZetQ/ltVz5EBweeTDG4f/RTo3Hfr8tpz8ascdFXYKlKHC'

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address == null || typeof address === 'string') throw new Error('no port from the kernel')
  return address.port
}

export async function startRegistry (options: StartRegistryOptions = {}): Promise<RunningRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-registry-'))
  let child: ChildProcess | undefined
  let output = ''
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    if (child != null && child.exitCode == null && child.signalCode == null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const result = await Promise.race([exited.then(() => 'exited'), sleep(3000).then(() => 'timeout')])
      if (result === 'timeout') {
        child.kill('SIGKILL')
        await Promise.race([exited, sleep(2000)])
      }
    }
    await rm(dir, { recursive: true, force: true })
  }

  try {
    let credentials: { username: string, password: string } | undefined
    let htpasswdLine: string | undefined
    if (options.auth === true) {
      credentials = { username: TEST_USERNAME, password: TEST_PASSWORD }
      htpasswdLine = TEST_HTPASSWD
    } else if (options.auth != null && options.auth !== false) {
      credentials = options.auth
      const made = spawnSync('htpasswd', ['-Bbn', credentials.username, credentials.password], { encoding: 'utf8' })
      if (made.status !== 0) throw new Error(`htpasswd failed (is apache2-utils installed?): ${made.stderr ?? made.error?.message}`)
      htpasswdLine = made.stdout.trim()
    }
    if (htpasswdLine != null) await writeFile(join(dir, 'htpasswd'), htpasswdLine + '\n')

    const port = await freePort()
    const config = dockerRegistryConfig({
      root: join(dir, 'data'),
      address: `127.0.0.1:${port}`,
      secret: 'shoal-test-secret',
      allowDelete: true,
      ...(htpasswdLine != null ? { htpasswd: { realm: 'shoal-test', path: join(dir, 'htpasswd') } } : {})
    })
    const configPath = join(dir, 'config.yml')
    await writeFile(configPath, config)

    child = spawn(options.command ?? 'docker-registry', ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.on('data', (chunk: Buffer) => { output = (output + chunk.toString('utf8')).slice(-64 * 1024) })
    child.stderr?.on('data', (chunk: Buffer) => { output = (output + chunk.toString('utf8')).slice(-64 * 1024) })
    let spawnError: Error | undefined
    child.on('error', err => { spawnError = err })

    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + (options.startTimeoutMs ?? 10_000)
    // /v2/ answers 200, or 401 with auth on: either way the registry is up.
    for (let attempt = 0; attempt < 500; attempt++) {
      if (spawnError != null) throw new Error(`docker-registry did not start: ${spawnError.message}`)
      if (child.exitCode != null) throw new Error(`docker-registry exited with ${child.exitCode}: ${output}`)
      try {
        const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) })
        await response.body?.cancel()
        if (response.status === 200 || response.status === 401) break
      } catch {}
      if (Date.now() > deadline) throw new Error(`docker-registry did not answer /v2/ on ${url} in time: ${output}`)
      await sleep(50)
    }

    return {
      registry: `127.0.0.1:${port}`,
      url,
      port,
      dir,
      ...(credentials != null ? credentials : {}),
      output: () => output,
      stop
    }
  } catch (err) {
    await stop()
    throw err
  }
}
