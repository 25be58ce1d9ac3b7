import type { Command } from '../command.js'
import { inspect } from './inspect.js'
import { unpack } from './unpack.js'
import { check } from './check.js'
import { build } from './build.js'

export const commands: Command[] = [build, inspect, unpack, check]
