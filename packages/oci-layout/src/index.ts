/**
 * OCI image layouts (`oci:DIR[:TAG]`) read and written as an ImageStore: the same shape as a
 * registry repository, so the converter and the CLI use either.
 */
export * from './errors.js'
export { ociLayout, parseOciReference, type OciLayoutInit, type OciLayoutStore } from './layout.js'
