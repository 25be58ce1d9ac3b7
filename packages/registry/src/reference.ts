import { InvalidReferenceError } from './errors.js'

/** Where a repository lives: the registry host (as written, with its port) and the repository path. */
export interface RepositoryLocation {
  /** `host[:port]`, IPv6 hosts in brackets; `docker.io` for Docker Hub. */
  registry: string
  /** Path inside the registry, e.g. `library/busybox`. */
  repository: string
}

/** An image: a repository plus a tag, a digest, or both (the digest wins when both are given). */
export interface ImageReference extends RepositoryLocation {
  tag?: string
  digest?: string
}

export const DOCKER_HUB = 'docker.io'
const DOCKER_HUB_API_HOST = 'registry-1.docker.io'

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const DOMAIN_NAME = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?$/
const IPV6_DOMAIN = /^\[[0-9a-fA-F:.]+\](?::[0-9]{1,5})?$/
const KNOWN_DIGEST_LENGTHS: Record<string, number> = { sha256: 64, sha512: 128 }
/** Docker's limit on the whole name (registry plus repository). */
const MAX_NAME_LENGTH = 255

/**
 * Parses `[docker://]host[:port]/repo[:tag][@algo:hex]`. A first path component without a dot, a
 * colon or the name localhost is a Docker Hub repository, as Docker reads it (`busybox` is
 * `docker.io/library/busybox`). With neither tag nor digest the tag is `latest`.
 */
export function parseImageReference (input: string): ImageReference {
  let rest = input.startsWith('docker://') ? input.slice('docker://'.length) : input
  if (rest.length === 0) throw new InvalidReferenceError(`empty image reference "${input}"`)

  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    validateDigest(digest, input)
  }

  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const lastColon = rest.lastIndexOf(':')
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1)
    rest = rest.slice(0, lastColon)
    if (!TAG.test(tag)) throw new InvalidReferenceError(`invalid tag "${tag}" in image reference "${input}"`)
  }

  const location = parseRepositoryLocation(rest, input)
  if (tag == null && digest == null) tag = 'latest'
  return { ...location, ...(tag != null ? { tag } : {}), ...(digest != null ? { digest } : {}) }
}

/** Parses `[docker://]host[:port]/repo` without tag or digest. */
export function parseRepositoryLocation (input: string, whole = input): RepositoryLocation {
  const name = input.startsWith('docker://') ? input.slice('docker://'.length) : input
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
    throw new InvalidReferenceError(`image name "${whole}" is empty or longer than ${MAX_NAME_LENGTH} characters`)
  }
  const slash = name.indexOf('/')
  let registry = DOCKER_HUB
  let repository = name
  if (slash >= 0) {
    const first = name.slice(0, slash)
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[') || first !== first.toLowerCase()) {
      registry = first
      repository = name.slice(slash + 1)
    }
  }
  if (!DOMAIN_NAME.test(registry) && !IPV6_DOMAIN.test(registry)) {
    throw new InvalidReferenceError(`invalid registry host "${registry}" in image reference "${whole}"`)
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw new InvalidReferenceError(`invalid repository path component "${component}" in image reference "${whole}"`)
    }
  }
  return { registry, repository }
}

function validateDigest (digest: string, whole: string): void {
  if (!DIGEST.test(digest)) throw new InvalidReferenceError(`invalid digest "${digest}" in image reference "${whole}"`)
  const [algorithm, hex] = digest.split(':') as [string, string]
  const expectedLength = KNOWN_DIGEST_LENGTHS[algorithm]
  if (expectedLength == null) throw new InvalidReferenceError(`unsupported digest algorithm "${algorithm}" in image reference "${whole}"`)
  if (hex.length !== expectedLength || !/^[0-9a-f]+$/.test(hex)) {
    throw new InvalidReferenceError(`digest "${digest}" in image reference "${whole}" is not ${expectedLength} lower-case hex digits`)
  }
}

/** `host[:port]/repo[:tag][@digest]`, the form skopeo prints after `docker://`. */
export function formatImageReference (ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag != null ? `:${ref.tag}` : ''}${ref.digest != null ? `@${ref.digest}` : ''}`
}

/** What goes after /manifests/: the digest when there is one, else the tag. */
export function manifestReference (ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest'
}

/** The host the HTTP API is served from: Docker Hub's API lives on another name than its references. */
export function apiHost (registry: string): string {
  return registry === DOCKER_HUB || registry === 'index.docker.io' ? DOCKER_HUB_API_HOST : registry
}

/** The host without its port, brackets removed from IPv6 literals. */
export function hostname (registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'))
  const colon = registry.lastIndexOf(':')
  return colon >= 0 ? registry.slice(0, colon) : registry
}

/**
 * Docker speaks plain HTTP to loopback registries without being told; everything else needs TLS
 * unless listed as insecure (by `host:port` or by host name).
 */
export function isInsecureRegistry (registry: string, insecureRegistries: readonly string[] = []): boolean {
  const host = hostname(registry).toLowerCase()
  if (host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true
  return insecureRegistries.some(entry => entry === registry || entry === host)
}
