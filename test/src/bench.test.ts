/**
 * `shoal bench startup --quick` and `shoal bench swarm --quick` end to end: real registry in a
 * network namespace behind a tc-capped veth, real pulls and containers. Every mode is in the JSON;
 * modes whose parts of Shoal exist (the `run` command, the daemon) must have run, the others must
 * say why not. Namespaces and processes are gone afterwards, also after SIGTERM.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { repoRoot, shoal, withTempDir } from './helpers.js'

const STARTUP_MODES = ['local', 'oci', 'oci-containerd', 'shoal-registry', 'shoal-swarm', 'shoal-warm']
const shoalBin = join(repoRoot, 'packages', 'cli', 'bin', 'shoal')

function has (program: string): boolean {
  return spawnSync('sh', ['-c', `command -v '${program}'`]).status === 0
}

const missing = ['ip', 'tc', 'docker-registry', 'skopeo', 'umoci', 'runc', 'nsenter'].filter(p => !has(p))
const skip = process.getuid?.() !== 0 ? 'needs root (namespaces, tc, runc)' : missing.length > 0 ? `needs ${missing.join(', ')}` : false

/** The CLI commands that exist now: modes built on them must run, not be reported unavailable. */
function cliCommands (): Set<string> {
  const out = spawnSync(shoalBin, ['--help'], { encoding: 'utf8' }).stdout
  return new Set(out.split('\n').map(l => /^ {2}(\S+)\s{2,}/.exec(l)?.[1]).filter((n): n is string => n != null))
}

/** Whether `shoal run` can go through a daemon (the swarm modes need it). */
function runHasDaemonOption (): boolean {
  return spawnSync(shoalBin, ['run', '--help'], { encoding: 'utf8' }).stdout.includes('--daemon')
}

function benchNamespaces (): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map(l => l.split(' ')[0]).filter(n => n.startsWith('shoalb-'))
}

function benchLinks (): string[] {
  return (JSON.parse(spawnSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' }).stdout || '[]') as Array<{ ifname: string }>)
    .map(l => l.ifname).filter(n => /^sb\d+[a-z]/.test(n))
}

describe('shoal bench', { skip, timeout: 15 * 60_000 }, () => {
  it('startup --quick measures every mode, with bytes by source, and leaves nothing behind', async () => {
    await withTempDir(async dir => {
      const namespacesBefore = new Set(benchNamespaces())
      const out = join(dir, 'results')
      const ran = await shoal(['bench', 'startup', '--quick', '--out', out, '--work-dir', join(dir, 'work')], { timeoutMs: 10 * 60_000 })
      const report = JSON.parse(await readFile(join(out, 'results.json'), 'utf8'))
      assert.equal(report.kind, 'startup')
      assert.equal(report.rateMbit, 100)
      assert.deepEqual(report.images.map((i: any) => i.name), ['busybox'])
      const image = report.images[0]
      assert.ok(image.ociBytes > 500_000 && image.nydusBytes > 500_000, `image sizes ${image.ociBytes} / ${image.nydusBytes}`)
      assert.deepEqual(report.cells.map((c: any) => c.system).sort(), [...STARTUP_MODES].sort())

      const commands = cliCommands()
      const expectRan = new Set(['local', 'oci'])
      if (has('containerd') && has('ctr')) expectRan.add('oci-containerd')
      if (commands.has('run')) { expectRan.add('shoal-registry'); expectRan.add('shoal-warm') }
      if (commands.has('run') && commands.has('daemon') && commands.has('preheat') && runHasDaemonOption()) expectRan.add('shoal-swarm')

      for (const cell of report.cells) {
        if (!expectRan.has(cell.system)) {
          assert.equal(cell.status, 'unavailable', `${cell.system}: ${cell.reason}`)
          assert.match(cell.reason, /\S/)
          continue
        }
        assert.equal(cell.status, 'ok', `${cell.system} should have run: ${cell.reason}\n${ran.stderr.slice(-3000)}`)
        assert.equal(cell.runs.length, 1)
        assert.ok(cell.seconds.median > 0 && cell.seconds.median < 120, `${cell.system} took ${cell.seconds.median} s`)
        for (const source of ['registry', 'peers', 'cache']) assert.equal(typeof cell.bytes[source], 'number', `${cell.system} bytes.${source}`)
      }
      const byName = new Map<string, any>(report.cells.map((c: any) => [c.system, c]))
      // The full pull moves the whole image over the capped link (plus HTTP and TCP overhead).
      const oci = byName.get('oci')
      assert.ok(oci.bytes.registry >= image.ociBytes && oci.bytes.registry < image.ociBytes * 1.2 + 200_000, `oci pulled ${oci.bytes.registry} for an image of ${image.ociBytes}`)
      // The floor: nothing crosses the link while a rootfs already on disk starts, and it beats the full pull.
      const local = byName.get('local')
      assert.ok(local.bytes.registry < 50_000, `local moved ${local.bytes.registry} bytes over the link`)
      assert.ok(local.seconds.median < oci.seconds.median, `local ${local.seconds.median} s, oci ${oci.seconds.median} s`)
      for (const baseline of ['oci', 'local']) {
        const against = report.ratios.filter((r: any) => r.baseline === baseline).map((r: any) => r.system).sort()
        assert.deepEqual(against, [...expectRan].filter(m => m !== baseline).sort(), `modes with a ratio against ${baseline}`)
      }
      const ociOverLocal = report.ratios.find((r: any) => r.baseline === 'local' && r.system === 'oci')
      assert.ok(Math.abs(ociOverLocal.ratio - oci.seconds.median / local.seconds.median) < 1e-9 && ociOverLocal.ratio > 1)
      if (expectRan.has('shoal-registry')) {
        const cold = byName.get('shoal-registry')
        const warm = byName.get('shoal-warm')
        assert.ok(cold.bytes.registry > 0, 'a cold shoal run fetched from the registry')
        assert.ok(warm.bytes.registry < cold.bytes.registry / 2, `warm fetched ${warm.bytes.registry}, cold ${cold.bytes.registry}`)
      }
      if (expectRan.has('shoal-swarm')) {
        const swarm = byName.get('shoal-swarm')
        assert.ok(swarm.bytes.peers > 0, `the host took its chunks from the seed: ${JSON.stringify(swarm.bytes)}`)
      }

      const md = await readFile(join(out, 'results.md'), 'utf8')
      assert.match(md, /\| mode \| median s \| min s \| max s \| registry MB/)
      for (const mode of STARTUP_MODES) assert.match(md, new RegExp(`^\\| ${mode} \\|`, 'm'))
      assert.match(md, /^\| busybox \| oci \| local \| \d+\.\d{3} \|/m, 'the ratios table puts oci against local')
      const svg = await readFile(join(out, 'chart.svg'), 'utf8')
      assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/)
      assert.ok((svg.match(/<rect /g) ?? []).length >= 1 + expectRan.size, 'a bar per mode that ran')

      assert.deepEqual(benchNamespaces().filter(n => !namespacesBefore.has(n)), [], 'namespaces left behind')
      assert.equal(ran.code, 0, ran.stderr.slice(-3000))
    })
  })

  it('swarm --quick: without Shoal the registry sends every host the whole image', async () => {
    await withTempDir(async dir => {
      const out = join(dir, 'results')
      const ran = await shoal(['bench', 'swarm', '--quick', '--out', out, '--work-dir', join(dir, 'work')], { timeoutMs: 10 * 60_000 })
      const report = JSON.parse(await readFile(join(out, 'results.json'), 'utf8'))
      assert.equal(report.kind, 'swarm')
      assert.equal(report.hostCount, 2)
      const oci = report.cells.find((c: any) => c.system === 'oci')
      assert.equal(oci.status, 'ok', oci.reason)
      assert.equal(oci.hosts.length, 2)
      assert.ok(oci.registryEgressBytes >= 2 * report.image.ociBytes, `egress ${oci.registryEgressBytes} for 2 × ${report.image.ociBytes}`)
      assert.ok(oci.egressRatio > 0.9 && oci.egressRatio < 1.1, `egress / read ${oci.egressRatio}`)
      assert.ok(oci.seconds.p50 > 0 && oci.seconds.max >= oci.seconds.p50)
      const swarm = report.cells.find((c: any) => c.system === 'shoal-swarm')
      const commands = cliCommands()
      if (commands.has('run') && commands.has('daemon') && runHasDaemonOption()) {
        assert.equal(swarm.status, 'ok', swarm.reason)
        assert.ok(swarm.bytesRead > 0)
      } else {
        assert.equal(swarm.status, 'unavailable')
      }
      assert.equal(ran.code, 0, ran.stderr.slice(-3000))
    })
  })

  it('SIGTERM in the middle stops its processes and removes its namespaces, veths and mounts', async () => {
    await withTempDir(async dir => {
      const work = join(dir, 'work')
      // With Shoal's swarm there, the signal comes while the daemons run; otherwise while publishing.
      const swarm = cliCommands().has('daemon') && runHasDaemonOption()
      const cue = swarm ? 'hosts start' : 'publishing'
      const child = spawn(shoalBin, ['bench', 'swarm', '--quick', '--modes', swarm ? 'shoal-swarm' : 'oci', '--out', join(dir, 'results'), '--work-dir', work], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      const exited = new Promise<number | null>(resolve => { child.on('close', code => { resolve(code) }) })
      const sawCue = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`never reached '${cue}': ${stderr}`)) }, 180_000)
        child.stderr.setEncoding('utf8').on('data', (d: string) => {
          stderr += d
          if (stderr.includes(cue)) { clearTimeout(timer); resolve() }
        })
      })
      await sawCue
      const during = benchNamespaces()
      assert.ok(during.length >= 4, `the switch, the registry and 2 hosts exist: ${during.join(', ')}`)
      const processesOf = (): string => spawnSync('sh', ['-c', `ps -eo pid,args | grep -F '${work}' | grep -v grep || true`], { encoding: 'utf8' }).stdout.trim()
      if (swarm) assert.match(processesOf(), /main\.js daemon /, 'the host daemons run')
      child.kill('SIGTERM')
      const code = await Promise.race([exited, new Promise(resolve => setTimeout(() => { resolve('timeout') }, 90_000))])
      assert.notEqual(code, 'timeout', 'the benchmark exited after SIGTERM')
      assert.notEqual(code, 0)
      assert.deepEqual(benchNamespaces().filter(n => during.includes(n)), [], 'namespaces of the interrupted run')
      assert.deepEqual(benchLinks().filter(l => during.some(n => l.startsWith(`sb${/shoalb-(\d+)-/.exec(n)?.[1] ?? 'x'}`))), [], 'veths of the interrupted run')
      assert.equal(processesOf(), '', 'processes it started (registry, daemons, pulls)')
      const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter(l => l.includes(work))
      assert.deepEqual(mounts, [], 'mounts under its work dir')
    })
  })
})
