import { parseArgs } from 'node:util'
import type { Writable } from 'node:stream'
import { InvalidArgumentError } from '@shoal/interface'

export interface OptionSpec {
  type: 'string' | 'boolean'
  short?: string
  multiple?: boolean
  default?: string | boolean | string[]
  /** Shown in --help; for string options, `valueName` names the value (`--blob-dir DIR`). */
  description: string
  valueName?: string
}

export interface CommandContext {
  positionals: string[]
  values: Record<string, string | boolean | string[] | undefined>
  stdout: Writable
  stderr: Writable
  /** True when stdout is a terminal (progress displays, colours). */
  interactive: boolean
  signal: AbortSignal
}

export interface Command {
  name: string
  /** One line for the command list. */
  summary: string
  /** Positional arguments as shown in usage, e.g. `IMAGE OUT`. */
  args: string
  /** Further paragraphs for --help. */
  description?: string
  options: Record<string, OptionSpec>
  positionals: { min: number, max: number }
  /** Resolves to the exit status. */
  run: (context: CommandContext) => Promise<number>
}

/** A command-line mistake: printed as one line with a hint to use --help. */
export class UsageError extends InvalidArgumentError {
  override name = 'UsageError'
}

export const commonOptions: Record<string, OptionSpec> = {
  help: { type: 'boolean', short: 'h', description: 'show this help' },
  debug: { type: 'boolean', description: 'print the stack trace of an error' }
}

export function parseCommandLine (command: Command, argv: string[]): { positionals: string[], values: CommandContext['values'] } {
  const options = { ...commonOptions, ...command.options }
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.entries(options).map(([name, spec]) => [name, {
        type: spec.type,
        ...(spec.short != null ? { short: spec.short } : {}),
        ...(spec.multiple === true ? { multiple: true } : {}),
        ...(spec.default !== undefined ? { default: spec.default } : {})
      }])),
      allowPositionals: true,
      strict: true
    })
  } catch (err: any) {
    throw new UsageError(`${command.name}: ${String(err.message).replace(/\. To specify a positional.*$/, '')}`)
  }
  return { positionals: parsed.positionals, values: parsed.values as CommandContext['values'] }
}

export function checkPositionals (command: Command, positionals: string[]): void {
  const { min, max } = command.positionals
  if (positionals.length < min) {
    throw new UsageError(`${command.name}: expected ${command.args}`)
  }
  if (positionals.length > max) {
    throw new UsageError(`${command.name}: unexpected argument '${positionals[max]}'`)
  }
}

export function formatHelp (command: Command): string {
  const options = { ...command.options, ...commonOptions }
  const rows = Object.entries(options).map(([name, spec]) => {
    const flag = `${spec.short != null ? `-${spec.short}, ` : '    '}--${name}${spec.type === 'string' ? ` ${spec.valueName ?? 'VALUE'}` : ''}`
    const suffix = spec.default !== undefined && spec.type === 'string' ? ` (default ${String(spec.default)})` : ''
    return [flag, spec.description + suffix + (spec.multiple === true ? ' (repeatable)' : '')]
  })
  const width = Math.max(...rows.map(([flag]) => flag.length))
  return [
    `Usage: shoal ${command.name} ${command.args}`.trimEnd(),
    '',
    command.summary,
    ...(command.description != null ? ['', command.description] : []),
    '',
    'Options:',
    ...rows.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`),
    ''
  ].join('\n')
}

export function stringOption (values: CommandContext['values'], name: string): string | undefined {
  const value = values[name]
  return typeof value === 'string' ? value : undefined
}
