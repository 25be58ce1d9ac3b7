import { ShoalError } from '@shoal/interface'

/** An image entry whose name or place would write outside the output directory, or twice in it. */
export class UnsafeImagePathError extends ShoalError {
  override name = 'UnsafeImagePathError'
  override readonly code = 'ERR_UNSAFE_IMAGE_PATH'
}

export class OutputNotEmptyError extends ShoalError {
  override name = 'OutputNotEmptyError'
  override readonly code = 'ERR_OUTPUT_NOT_EMPTY'
}

/** A helper program (setfattr, mknod) that failed. */
export class ToolFailedError extends ShoalError {
  override name = 'ToolFailedError'
  override readonly code = 'ERR_TOOL_FAILED'
}
