import type { Command } from '../command.js'
import { inspect } from './inspect.js'
import { unpack } from './unpack.js'
import { check } from './check.js'

export const commands: Command[] = [inspect, unpack, check]
