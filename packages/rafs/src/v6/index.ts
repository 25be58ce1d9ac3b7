/**
 * RAFS v6: the EROFS-based bootstrap of Nydus. Read one into the shared model, or lay a model out
 * as one that Nydus, erofs-utils and the Linux kernel accept.
 */
export { readBootstrapV6 } from './reader.js'
export { writeBootstrapV6 } from './writer.js'
export type { WriteBootstrapV6Options } from './writer.js'
