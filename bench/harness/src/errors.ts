import { ShoalError } from '@shoal/interface'

/** A command the benchmark ran exited badly: which command, its status, the end of its stderr. */
export class BenchCommandError extends ShoalError {
  override name = 'BenchCommandError'
  override readonly code = 'ERR_BENCH_COMMAND'
}

/** A container did not print its ready line: what was expected, what came instead. */
export class NotReadyError extends ShoalError {
  override name = 'NotReadyError'
  override readonly code = 'ERR_BENCH_NOT_READY'
}

/** Setting up namespaces, veths or shaping failed. */
export class BenchNetworkError extends ShoalError {
  override name = 'BenchNetworkError'
  override readonly code = 'ERR_BENCH_NETWORK'
}
