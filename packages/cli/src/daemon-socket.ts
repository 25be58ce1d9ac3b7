import { existsSync } from 'node:fs'
import { stringOption, UsageError, type CommandContext, type OptionSpec } from './command.js'

/** Where `shoal daemon` puts its API socket unless told otherwise. */
export const DEFAULT_API_SOCKET = '/run/shoal/api.sock'

export const daemonOption: Record<string, OptionSpec> = {
  daemon: { type: 'string', valueName: 'PATH', description: `the daemon's API socket (default $SHOAL_DAEMON, else ${DEFAULT_API_SOCKET})` }
}

/** The socket a command was pointed at: --daemon, else SHOAL_DAEMON; undefined when neither is set. */
export function chosenDaemonSocket (values: CommandContext['values']): string | undefined {
  const flag = stringOption(values, 'daemon')
  if (flag != null) return flag
  const env = process.env.SHOAL_DAEMON
  return env != null && env !== '' ? env : undefined
}

/** For commands that only work through a daemon: the chosen socket, else the default one if it exists. */
export function requiredDaemonSocket (values: CommandContext['values'], command: string): string {
  const chosen = chosenDaemonSocket(values)
  if (chosen != null) return chosen
  if (existsSync(DEFAULT_API_SOCKET)) return DEFAULT_API_SOCKET
  throw new UsageError(`${command}: no daemon: pass --daemon PATH or set SHOAL_DAEMON (and start one with 'shoal daemon')`)
}
