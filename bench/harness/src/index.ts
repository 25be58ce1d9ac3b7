/**
 * The benchmark harness: contracts every measured system implements, the runners, capped network
 * namespaces, cleanup on signals and failure, results writers and a progress display.
 */
export * from './contracts.js'
export * from './report.js'
export * from './errors.js'
export { run, runUntilReady, startBackground, killTree, stopAllChildren, which, type Ran, type RunOptions, type ReadyResult, type Background } from './exec.js'
export { Cleanup, cleanupOnSignals, mountsUnder, unmountUnder } from './cleanup.js'
export { cappedLink, switchedNetwork, removeStaleNetworks, shapeInterface, interfaceCounters, type CappedLink, type SwitchedNetwork, type SwitchedHost, type LinkShape, type InterfaceCounters } from './netns.js'
export { startBenchRegistry, publishImage, imageBytes, type BenchRegistry, type PublishedImage } from './registry.js'
export { runStartupBench, runSwarmBench, type BenchInit, type StartupBenchInit, type SwarmBenchInit } from './runner.js'
export { writeResults, startupMarkdown, swarmMarkdown, startupChart, swarmChart, barChart, markdownTable, type ChartBar, type ChartGroup } from './writers.js'
export { Progress } from './progress.js'
export { median, percentile, summarize } from './stats.js'
export { shoalCommands, missingShoalCommands, sortSources, startShoalDaemon, daemonStatus, daemonBytes, type RunningDaemon, type DaemonStatusJson } from './shoal.js'
export { REPO_ROOT, DEFAULT_SHOAL_BIN, DEFAULT_OUT_DIR, commonFlags, usage, parseFlags, numberFlag, runBenchmarkMain, type Stage, type FlagSpec } from './main.js'
