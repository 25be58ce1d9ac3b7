import type { Command } from '../command.js'

/**
 * Every command, loaded only when named: a command's module pulls in the packages it needs
 * (libp2p for the daemon, FUSE for mounts), and `shoal run` should not pay for `shoal daemon`.
 */
const loaders: Record<string, () => Promise<Command>> = {
  build: async () => (await import('./build.js')).build,
  convert: async () => (await import('./convert.js')).convert,
  inspect: async () => (await import('./inspect.js')).inspect,
  unpack: async () => (await import('./unpack.js')).unpack,
  check: async () => (await import('./check.js')).check,
  daemon: async () => (await import('./daemon.js')).daemon,
  preheat: async () => (await import('./preheat.js')).preheat,
  status: async () => (await import('./status.js')).status,
  bench: async () => (await import('./bench.js')).bench,
  mount: async () => (await import('./mount.js')).mount,
  umount: async () => (await import('./umount.js')).umount,
  run: async () => (await import('./run.js')).run
}

export const commandNames = Object.keys(loaders)

export async function loadCommand (name: string): Promise<Command | undefined> {
  return Object.hasOwn(loaders, name) ? await loaders[name]() : undefined
}

export async function loadAllCommands (): Promise<Command[]> {
  return await Promise.all(commandNames.map(async name => await loaders[name]()))
}
