/** results.json, results.md and chart.svg from a report. The chart is plain hand-written SVG. */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { StartupReport, SwarmReport } from './report.js'

const mb = (bytes: number | undefined): string => bytes == null ? '' : (bytes / 1e6).toFixed(1)
const sec = (seconds: number | undefined): string => seconds == null || !Number.isFinite(seconds) ? '' : seconds.toFixed(2)

/** A GitHub table; columns numericFrom…numericTo (inclusive) are right-aligned. */
export function markdownTable (header: string[], rows: string[][], numericFrom = 1, numericTo = header.length - 1): string {
  const cell = (c: string): string => c.replace(/\|/g, '\\|').replace(/\n/g, ' ')
  return [
    `| ${header.map(cell).join(' | ')} |`,
    `| ${header.map((_, i) => i >= numericFrom && i <= numericTo ? '---:' : '---').join(' | ')} |`,
    ...rows.map(r => `| ${r.map(cell).join(' | ')} |`)
  ].join('\n')
}

export function startupMarkdown (report: StartupReport): string {
  const lines = [
    '# Container startup: time to ready',
    '',
    `The registry behind a veth capped with tc tbf at ${report.rateMbit} Mbit/s each way; ${report.runs} run(s) per cell. ` +
      'Time to ready runs from the command\'s start until the container prints its ready line. Bytes are medians per run: ' +
      '*registry* is what crossed the capped link, *peers* what came from other hosts, *cache* what the local chunk cache served.',
    ''
  ]
  for (const image of report.images) {
    lines.push(`## ${image.name}: ${image.description}`, '', `Ready: \`${image.ready.command.join(' ')}\` prints \`${image.ready.line}\`. ` +
      `OCI image ${mb(image.ociBytes)} MB, Nydus image ${mb(image.nydusBytes)} MB in the registry.`, '')
    const rows = report.cells.filter(c => c.image === image.name).map(c => [
      c.system,
      c.status === 'ok' ? sec(c.seconds?.median) : c.status,
      sec(c.seconds?.min),
      sec(c.seconds?.max),
      mb(c.bytes?.registry),
      mb(c.bytes?.peers),
      mb(c.bytes?.cache),
      c.status === 'ok' ? c.description : (c.reason ?? '').slice(0, 200)
    ])
    lines.push(markdownTable(['mode', 'median s', 'min s', 'max s', 'registry MB', 'peers MB', 'cache MB', 'what / why not'], rows, 1, 6), '')
  }
  if (report.ratios.length > 0) {
    lines.push('## Ratios of medians', '', markdownTable(['image', 'mode', 'against', 'ratio'],
      report.ratios.map(r => [r.image, r.system, r.baseline, r.ratio.toFixed(3)]), 3), '')
  }
  lines.push(`Command: \`${report.command}\` (Node ${report.node}, ${report.cpus} CPUs, Linux ${report.kernel}, ${report.date}).`, '')
  return lines.join('\n')
}

export function swarmMarkdown (report: SwarmReport): string {
  const rows = report.cells.map(c => [
    c.system,
    c.status === 'ok' ? sec(c.seconds?.p50) : c.status,
    sec(c.seconds?.p99),
    sec(c.seconds?.max),
    mb(c.registryEgressBytes),
    mb(c.bytesRead),
    c.egressRatio == null ? '' : c.egressRatio.toFixed(3),
    mb(c.bytes?.registry),
    mb(c.bytes?.peers),
    mb(c.bytes?.cache),
    c.status === 'ok' ? c.description : (c.reason ?? '').slice(0, 200)
  ])
  return [
    '# Swarm: one image started on many hosts at once',
    '',
    `${report.hostCount} hosts, each in its own network namespace behind a veth capped at ${report.rateMbit} Mbit/s each way; ` +
      `the registry behind one capped at ${report.registryRateMbit} Mbit/s. Image ${report.image.name} (${report.image.description}): ` +
      `OCI ${mb(report.image.ociBytes)} MB, Nydus ${mb(report.image.nydusBytes)} MB. *Registry egress* is what the registry sent over its link ` +
      'during the run; *bytes read* what the hosts took in from every source; bytes by source are sums over hosts.',
    '',
    markdownTable(['mode', 'p50 s', 'p99 s', 'max s', 'registry egress MB', 'bytes read MB', 'egress / read', 'registry MB', 'peers MB', 'cache MB', 'what / why not'], rows, 1, 9),
    '',
    `Command: \`${report.command}\` (Node ${report.node}, ${report.cpus} CPUs, Linux ${report.kernel}, ${report.date}).`,
    ''
  ].join('\n')
}

export interface ChartBar { label: string, value: number, low?: number, high?: number, note?: string }
export interface ChartGroup { label: string, bars: ChartBar[] }

const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#9d755d']
const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/**
 * Horizontal bars grouped by label, whiskers from low to high, the value printed at each bar's end;
 * with scalePerGroup each group gets its own axis (groups measured in different units).
 */
export function barChart (init: { title: string, unit: string, groups: ChartGroup[], scalePerGroup?: boolean }): string {
  const labelWidth = 150
  const plotWidth = 520
  const barHeight = 16
  const gap = 4
  const groupGap = 18
  const top = 40
  const bars = init.groups.flatMap(g => g.bars)
  const maxOf = (list: ChartBar[]): number => Math.max(1e-9, ...list.map(b => Math.max(b.value, b.high ?? 0)).filter(Number.isFinite))
  let maxValue = maxOf(bars)
  const systems = [...new Set(bars.map(b => b.label))]
  const color = (label: string): string => PALETTE[systems.indexOf(label) % PALETTE.length]
  const scale = (v: number): number => Math.max(0, v) / maxValue * plotWidth
  const parts: string[] = []
  let y = top
  for (const group of init.groups) {
    if (init.scalePerGroup === true) maxValue = maxOf(group.bars)
    parts.push(`<text x="8" y="${y + 12}" font-weight="bold">${escapeXml(group.label)}</text>`)
    y += 18
    for (const bar of group.bars) {
      parts.push(`<text x="${labelWidth - 6}" y="${y + 12}" text-anchor="end">${escapeXml(bar.label)}</text>`)
      if (Number.isFinite(bar.value)) {
        const w = scale(bar.value)
        parts.push(`<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${color(bar.label)}"/>`)
        if (bar.low != null && bar.high != null) {
          const x1 = labelWidth + scale(bar.low)
          const x2 = labelWidth + scale(bar.high)
          const mid = y + barHeight / 2
          parts.push(`<path d="M${x1.toFixed(1)} ${mid}H${x2.toFixed(1)}M${x1.toFixed(1)} ${mid - 4}V${mid + 4}M${x2.toFixed(1)} ${mid - 4}V${mid + 4}" stroke="#222" fill="none"/>`)
        }
        const text = `${bar.value < 10 ? bar.value.toFixed(2) : bar.value.toFixed(1)} ${init.unit}${bar.note != null ? ` · ${bar.note}` : ''}`
        parts.push(`<text x="${(labelWidth + Math.max(w, scale(bar.high ?? 0)) + 6).toFixed(1)}" y="${y + 12}">${escapeXml(text)}</text>`)
      } else {
        parts.push(`<text x="${labelWidth + 4}" y="${y + 12}" fill="#888">${escapeXml(bar.note ?? 'unavailable')}</text>`)
      }
      y += barHeight + gap
    }
    y += groupGap - gap
  }
  const width = labelWidth + plotWidth + 200
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="22" font-size="15" font-weight="bold">${escapeXml(init.title)}</text>`,
    ...parts,
    '</svg>',
    ''
  ].join('\n')
}

export function startupChart (report: StartupReport): string {
  return barChart({
    title: `Time to ready (median, whiskers min–max), registry at ${report.rateMbit} Mbit/s`,
    unit: 's',
    groups: report.images.map(image => ({
      label: image.name,
      bars: report.cells.filter(c => c.image === image.name).map(c => ({
        label: c.system,
        value: c.status === 'ok' ? c.seconds?.median ?? NaN : NaN,
        ...(c.status === 'ok' && c.seconds != null ? { low: c.seconds.min, high: c.seconds.max, note: `${mb(c.bytes?.registry)} MB from registry` } : { note: c.status }),
      }))
    }))
  })
}

export function swarmChart (report: SwarmReport): string {
  const ok = report.cells.filter(c => c.status === 'ok')
  return barChart({
    title: `${report.hostCount} hosts start ${report.image.name} at once (hosts ${report.rateMbit} Mbit/s, registry ${report.registryRateMbit} Mbit/s)`,
    unit: '',
    scalePerGroup: true,
    groups: [
      { label: 'time to ready per host, s (p50, whiskers to max)', bars: report.cells.map(c => ({ label: c.system, value: c.status === 'ok' ? c.seconds?.p50 ?? NaN : NaN, ...(c.seconds != null ? { low: c.seconds.p50, high: c.seconds.max } : { note: c.status }) })) },
      { label: 'registry egress, MB', bars: ok.map(c => ({ label: c.system, value: (c.registryEgressBytes ?? 0) / 1e6 })) },
      { label: 'bytes read by the hosts, MB', bars: ok.map(c => ({ label: c.system, value: (c.bytesRead ?? 0) / 1e6 })) }
    ]
  })
}

/** Writes results.json, results.md and chart.svg into dir; returns their paths. */
export async function writeResults (dir: string, report: StartupReport | SwarmReport): Promise<string[]> {
  await mkdir(dir, { recursive: true })
  const files: Array<[string, string]> = [
    ['results.json', JSON.stringify(report, null, 2) + '\n'],
    ['results.md', report.kind === 'startup' ? startupMarkdown(report) : swarmMarkdown(report)],
    ['chart.svg', report.kind === 'startup' ? startupChart(report) : swarmChart(report)]
  ]
  for (const [name, text] of files) await writeFile(join(dir, name), text)
  return files.map(([name]) => join(dir, name))
}
