/**
 * Mounting Nydus images: mode `fuse` (the tree served by FUSE from the bootstrap and a blob
 * device), mode `erofs` (the kernel mounts the v6 bootstrap, FUSE serves blob bytes as files), and
 * containers on them (overlayfs + runc).
 */
export * from './errors.js'
export * from './device.js'
export { Limiter } from './limiter.js'
export { Errno, loadFuseNative, forceUnmountFuse, type FuseStat, type FuseStatfs, type FuseOperations, type FuseMountOptions } from './fuse-native.js'
export { RafsFilesystem, type RafsFilesystemOptions } from './rafs-fs.js'
export { BlobFilesFilesystem, blobFileName, type BlobFilesOptions } from './blob-files.js'
export { mountImage, mountFuseTree, mountErofs, mountFuse, kernelHasErofs, type ImageMount, type MountImageInit, type MountMode, type FuseMount } from './mount.js'
export { mountOverlay, writeBundle, resolveUser, containerArgs, runContainer, type ImageRunConfig, type ContainerInit, type ContainerResult } from './container.js'
export { mountPoints, isMountPoint, unmountPath } from './exec.js'
export { clearMountWorkDir } from './leftovers.js'
