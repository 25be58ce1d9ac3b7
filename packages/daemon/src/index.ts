/**
 * The Shoal host daemon: composes the chunk cache, the registry client, the swarm and the mounts;
 * serves an HTTP API on a root-only unix socket and Prometheus metrics on loopback.
 *
 *   const d = daemon({ stateDir, apiSocket, listen, bootstrap, seed })({ mounter })
 *   await d.start()
 *   await d.preheat('docker://reg/app:1-nydus')
 *   await d.stop()
 */
export * from './errors.js'
export { daemon } from './daemon.js'
export type { Daemon, DaemonInit, DaemonComponents, DaemonStatus, Mounter, MountHandle, MountInfo, PreheatResult } from './daemon.js'
export { parseDaemonConfig, loadDaemonConfig, parseLoopbackAddress, SERVE_FAULTS } from './config.js'
export type { DaemonConfig, ServeFault } from './config.js'
export { daemonClient } from './client.js'
export type { DaemonClient } from './client.js'
export { registerDaemonMetrics, serveMetrics } from './metrics.js'
export type { MetricsSnapshot, DaemonMetrics } from './metrics.js'
