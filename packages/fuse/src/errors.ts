import { ShoalError } from '@shoal/interface'

/** fuse-native cannot be loaded or /dev/fuse cannot be used; the message says why and what to install. */
export class FuseUnavailableError extends ShoalError {
  override name = 'FuseUnavailableError'
  override readonly code = 'ERR_FUSE_UNAVAILABLE'
}

/** A mount, unmount, loop setup or overlay step failed; the message names the command and what it printed. */
export class MountError extends ShoalError {
  override name = 'MountError'
  override readonly code = 'ERR_MOUNT'
}

/** The container could not be prepared or started (bundle, runc); not raised for a non-zero exit status. */
export class ContainerError extends ShoalError {
  override name = 'ContainerError'
  override readonly code = 'ERR_CONTAINER'
}
