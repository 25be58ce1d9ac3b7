/**
 * What every measured system implements, so each figure has its baseline beside it, measured the
 * same way: one implementation per system (the full OCI pull, Shoal from the registry, Shoal with a
 * swarm, Shoal warm), one runner.
 */
import type { AbortOptions } from '@shoal/interface'

/** Where bytes came from: the registry (over the capped link), other hosts, the local chunk cache. */
export interface ByteCounts {
  registry: number
  peers: number
  cache: number
}

/** An image the benchmarks start, as built by @shoal/bench-images. */
export interface BenchImage {
  name: string
  description: string
  /** The OCI image layout directory and tag that hold it. */
  layout: string
  tag: string
  /** The command that shows the app is ready, and the line it prints when it is. */
  ready: { command: string[], line: string }
}

/** One image as the systems find it: in the registry, behind the capped link. */
export interface StartupTarget {
  image: BenchImage
  /** `HOST:PORT` of the registry, reached over the capped link. */
  registry: string
  /** docker://… of the OCI image and of its Nydus conversion, both in that registry. */
  ociRef: string
  nydusRef: string
  /** Bytes of each image in the registry (manifest, config, layers). */
  ociBytes: number
  nydusBytes: number
  /** A scratch directory this system may use for this image; removed afterwards. */
  workDir: string
}

export interface StartupRun {
  /** From the command's start to its ready line. */
  seconds: number
  /**
   * Bytes by source as the system saw them. The runner sets `registry` from the link's counters
   * (what crossed the capped link during the timed part) unless the system measured it better.
   */
  bytes: Partial<ByteCounts>
  /** Anything else worth keeping (the mount mode used, the runtime). */
  detail?: Record<string, string | number>
}

export interface StartupSystem {
  /** Its mode name in tables: local, oci, oci-containerd, shoal-registry, shoal-swarm, shoal-warm. */
  readonly name: string
  readonly description: string
  /** Why it cannot run here (a missing program, a part of Shoal not built yet), or undefined. */
  unavailable: (options?: AbortOptions) => Promise<string | undefined>
  /** Untimed, before each run: the state the mode promises (a cold cache, a warm one, a warm seed). */
  prepare: (target: StartupTarget, options?: AbortOptions) => Promise<void>
  /** Timed: start the container and wait for its ready line. */
  start: (target: StartupTarget, options?: AbortOptions) => Promise<StartupRun>
  /** Untimed, after each run, also after a failed one: remove containers, mounts, pulled images. */
  reset: (target: StartupTarget, options?: AbortOptions) => Promise<void>
  /** After the last image: stop whatever the system started. */
  close: (options?: AbortOptions) => Promise<void>
}

/** One host of a swarm run: its own namespace behind its own capped link. */
export interface SwarmHost {
  index: number
  namespace: string
  address: string
  workDir: string
}

export interface SwarmTarget extends StartupTarget {
  hosts: SwarmHost[]
}

export interface SwarmHostRun extends StartupRun {
  host: number
}

export interface SwarmSystem {
  /** oci (every host pulls the whole image) or shoal-swarm (daemons sharing chunks). */
  readonly name: string
  readonly description: string
  unavailable: (options?: AbortOptions) => Promise<string | undefined>
  /** Untimed: start daemons, join them into a swarm. */
  setup: (target: SwarmTarget, options?: AbortOptions) => Promise<void>
  /** Timed, called for every host at the same moment. */
  startOnHost: (target: SwarmTarget, host: SwarmHost, options?: AbortOptions) => Promise<SwarmHostRun>
  /** Stop daemons, remove containers and mounts. Also called after a failure. */
  teardown: (target: SwarmTarget, options?: AbortOptions) => Promise<void>
}
