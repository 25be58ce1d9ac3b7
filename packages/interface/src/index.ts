/**
 * Shared contracts of Shoal: the types every package speaks, the errors they share,
 * and the small interfaces behind which chunk sources and blob backends sit.
 * This package imports no other workspace package.
 */
export * from './types.js'
export * from './errors.js'
export * from './abort.js'
export * from './oci.js'
