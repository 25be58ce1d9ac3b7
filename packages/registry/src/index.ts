/**
 * An OCI distribution (v1.1) and Docker registry v2 client: references, auth (anonymous, basic,
 * bearer tokens), manifests and indexes with platform selection, blobs with Range reads, and
 * uploads (monolithic, chunked, cross-repository mount). Every byte returned whole is checked
 * against its digest; Range reads are checked by the caller against chunk digests.
 */
export * from './errors.js'
export * from './reference.js'
export * from './manifest.js'
export * from './digest.js'
export { loadCredentials, findCredentials, parseWwwAuthenticate } from './auth.js'
export type { Credentials, CredentialFileOptions, AuthChallenge } from './auth.js'
export type { RetryOptions, TransportInit } from './http.js'
export { registry } from './client.js'
export type {
  RegistryClient, RegistryInit, RegistryCallOptions, RegistryProgressEvent, GetManifestOptions, FetchedManifest,
  ResolvedImage, ResolveImageOptions, ManifestHead, BlobHead, BlobSink, GetBlobOptions, BlobSource, PushBlobOptions,
  PushBlobResult, PushManifestResult, ReferenceLike, LocationLike
} from './client.js'
export { registryImageStore } from './store.js'
export { dockerRegistryConfig, type DockerRegistryConfigInit } from './docker-registry-config.js'
export type { RegistryImageStore } from './store.js'
