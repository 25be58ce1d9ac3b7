/**
 * Whole-image operations over a bootstrap and its blobs: unpack the tree to a directory, check
 * every chunk against its digest.
 */
export * from './errors.js'
export * from './image-walk.js'
export * from './unpack.js'
export * from './check.js'
