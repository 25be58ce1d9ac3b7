import type { Command } from '../command.js'
import { build } from './build.js'
import { convert } from './convert.js'
import { inspect } from './inspect.js'
import { unpack } from './unpack.js'
import { check } from './check.js'

export const commands: Command[] = [build, convert, inspect, unpack, check]
