import type { Command } from '../command.js'
import { build } from './build.js'
import { convert } from './convert.js'
import { inspect } from './inspect.js'
import { unpack } from './unpack.js'
import { check } from './check.js'
import { daemon } from './daemon.js'
import { preheat } from './preheat.js'
import { status } from './status.js'
import { bench } from './bench.js'

export const commands: Command[] = [build, convert, inspect, unpack, check, daemon, preheat, status, bench]
