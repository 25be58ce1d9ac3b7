import { open, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { BlobNotFoundError, InvalidArgumentError, throwIfAborted, type AbortOptions, type BlobBackend } from '@shoal/interface'

export interface BlobDirectoryInit {
  /** A directory holding one file per blob, named by its blob id (as nydus-image writes them). */
  path: string
}

export interface BlobDirectory extends BlobBackend {
  /** Closes the file handles kept open between reads. */
  close: () => Promise<void>
}

const BLOB_ID = /^[0-9a-f]{64}$/

class LocalBlobDirectory implements BlobDirectory {
  readonly name: string
  private readonly handles = new Map<string, Promise<FileHandle>>()

  constructor (private readonly path: string) {
    this.name = `blob directory ${path}`
  }

  private fileOf (blobId: string): string {
    // Blob ids become file names: refuse anything that is not a plain hex id.
    if (!BLOB_ID.test(blobId)) throw new InvalidArgumentError(`invalid blob id '${blobId}'`)
    return join(this.path, blobId)
  }

  private async handle (blobId: string): Promise<FileHandle> {
    let handle = this.handles.get(blobId)
    if (handle == null) {
      handle = open(this.fileOf(blobId), 'r').catch((err: NodeJS.ErrnoException) => {
        this.handles.delete(blobId)
        throw err.code === 'ENOENT' ? new BlobNotFoundError(blobId, this.name) : err
      })
      this.handles.set(blobId, handle)
    }
    return await handle
  }

  async size (blobId: string, options?: AbortOptions): Promise<number> {
    throwIfAborted(options)
    try {
      return (await stat(this.fileOf(blobId))).size
    } catch (err: any) {
      throw err.code === 'ENOENT' ? new BlobNotFoundError(blobId, this.name) : err
    }
  }

  async read (blobId: string, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    throwIfAborted(options)
    const handle = await this.handle(blobId)
    const buffer = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await handle.read(buffer, done, length - done, offset + done)
      if (bytesRead === 0) {
        throw new BlobNotFoundError(blobId, `${this.name} (wanted bytes ${offset}..${offset + length}, the file ends at ${offset + done})`)
      }
      done += bytesRead
    }
    return buffer
  }

  async close (): Promise<void> {
    const handles = [...this.handles.values()]
    this.handles.clear()
    await Promise.all(handles.map(async h => { await (await h.catch(() => undefined))?.close() }))
  }
}

export function blobDirectory (init: BlobDirectoryInit): BlobDirectory {
  return new LocalBlobDirectory(init.path)
}
