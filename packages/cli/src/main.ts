import { loadAllCommands, loadCommand } from './commands/index.js'
import { checkPositionals, formatHelp, parseCommandLine, UsageError } from './command.js'

async function topLevelHelp (): Promise<string> {
  const commands = await loadAllCommands()
  const width = Math.max(...commands.map(c => c.name.length))
  return [
    'Usage: shoal COMMAND [options]',
    '',
    'Shoal gets container images onto a fleet fast: Nydus images in any OCI registry, mounted lazily,',
    'chunks shared between hosts over a libp2p swarm.',
    '',
    'Commands:',
    ...commands.map(c => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `shoal COMMAND --help` for the options of one command.',
    ''
  ].join('\n')
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name == null || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await topLevelHelp())
    return name == null ? 2 : 0
  }
  const debug = rest.includes('--debug')
  let command: Awaited<ReturnType<typeof loadCommand>>
  try {
    command = await loadCommand(name)
    if (command == null) throw new UsageError(`unknown command '${name}'`)
    const { positionals, values } = parseCommandLine(command, rest)
    if (values.help === true) {
      process.stdout.write(formatHelp(command))
      return 0
    }
    checkPositionals(command, positionals)
    const controller = new AbortController()
    const onSignal = (): void => { controller.abort() }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    try {
      return await command.run({
        positionals,
        values,
        stdout: process.stdout,
        stderr: process.stderr,
        interactive: process.stdout.isTTY === true,
        signal: controller.signal
      })
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  } catch (err: any) {
    if (debug) {
      process.stderr.write(`${err?.stack ?? String(err)}\n`)
    } else {
      const kind = err?.name != null && err.name !== 'Error' && !(err instanceof UsageError) ? `${err.name}: ` : ''
      const message = String(err?.message ?? err).split('\n')[0]
      process.stderr.write(`shoal: ${kind}${message}\n`)
      if (err instanceof UsageError) process.stderr.write(`Run 'shoal ${command?.name ?? ''} --help' for usage.\n`.replace('  ', ' '))
    }
    return err instanceof UsageError ? 2 : 1
  }
}

process.exitCode = await main(process.argv.slice(2))
