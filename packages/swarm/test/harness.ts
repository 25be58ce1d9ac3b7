/**
 * Spawns test nodes (test-node.js) as separate processes and talks to them over stdio.
 * A node gets 45 s to start: five of them loading libp2p at once on a busy 2-core host took over 15 s.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const NODE_SCRIPT = fileURLToPath(new URL('./test-node.js', import.meta.url))

export interface TestNode {
  peerId: string
  multiaddrs: string[]
  process: ChildProcess
  call<T = any>(op: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>
  stop(): Promise<void>
  kill(signal?: NodeJS.Signals): Promise<void>
}

export async function startNode (config: unknown, readyTimeoutMs = 45_000): Promise<TestNode> {
  const child = spawn(process.execPath, ['--enable-source-maps', NODE_SCRIPT, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (data: Buffer) => { stderr = (stderr + data.toString()).slice(-4000) })
  const lines = createInterface({ input: child.stdout! })
  const waiting = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  let nextId = 1
  const exited = new Promise<void>(resolve => child.once('exit', () => {
    for (const w of waiting.values()) w.reject(new Error(`test node exited: ${stderr}`))
    waiting.clear()
    resolve()
  }))
  const ready = new Promise<any>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`test node not ready after ${readyTimeoutMs} ms: ${stderr}`)) }, readyTimeoutMs)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`test node exited with ${code}: ${stderr}`)) })
    lines.on('line', (line) => {
      let message: any
      try { message = JSON.parse(line) } catch { return }
      if (message.ready === true) {
        clearTimeout(timer)
        resolve(message)
        return
      }
      const w = waiting.get(message.id)
      if (w == null) return
      waiting.delete(message.id)
      if (message.ok === true) w.resolve(message.result)
      else w.reject(new Error(message.error))
    })
  })
  let info: any
  try {
    info = await ready
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return {
    peerId: info.peerId,
    multiaddrs: info.multiaddrs,
    process: child,
    async call (op, args = {}, timeoutMs = 20_000) {
      const id = nextId++
      return await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id)
          reject(new Error(`${op} timed out after ${timeoutMs} ms`))
        }, timeoutMs)
        waiting.set(id, {
          resolve: (v) => { clearTimeout(timer); resolve(v) },
          reject: (e) => { clearTimeout(timer); reject(e) }
        })
        child.stdin!.write(JSON.stringify({ id, op, ...args }) + '\n')
      })
    },
    async stop () {
      if (child.exitCode != null || child.signalCode != null) return
      child.stdin!.end()
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
    async kill (signal = 'SIGKILL') {
      if (child.exitCode != null || child.signalCode != null) return
      child.kill(signal)
      await exited
    }
  }
}
