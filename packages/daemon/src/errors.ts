/** A daemon setting that cannot work: says which setting, what it expected and what it got. */
export class DaemonConfigError extends Error {
  override name = 'DaemonConfigError'
}

/** The daemon is not running (no socket, or nobody answers on it). */
export class DaemonUnreachableError extends Error {
  override name = 'DaemonUnreachableError'
}

/** The daemon answered a request with an error: its status, the remote error's name and message. */
export class DaemonRequestError extends Error {
  override name = 'DaemonRequestError'
  constructor (readonly status: number, readonly remoteName: string, message: string) {
    super(message)
  }
}

/** An image path that names nothing, or not a regular file. */
export class ImagePathError extends Error {
  override name = 'ImagePathError'
}

/** No mount with this id or mount point. */
export class MountNotFoundError extends Error {
  override name = 'MountNotFoundError'
}

/** Mounting was asked of a daemon that was given no mounter. */
export class MountsUnsupportedError extends Error {
  override name = 'MountsUnsupportedError'
}
