import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, chown, copyFile, link, mkdir, symlink, truncate, writeFile, lutimes } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/**
 * A small real root filesystem: Debian's static busybox with a link per applet, plus every kind of
 * entry an image carries — xattrs, hard links, symlinks (dangling too), a fifo, devices, a setuid
 * file, a foreign owner, a multi-chunk file, a sparse file, an empty file, a long name.
 */
export async function makeBusyboxRootfs (root: string): Promise<void> {
  for (const dir of ['bin', 'etc', 'dev', 'tmp', 'data/deep/er/still']) await mkdir(join(root, dir), { recursive: true })
  await copyFile('/bin/busybox', join(root, 'bin', 'busybox'))
  await chmod(join(root, 'bin', 'busybox'), 0o755)
  const { stdout } = await run('/bin/busybox', ['--list'])
  for (const applet of stdout.split('\n').filter(a => a !== '' && a !== 'busybox')) {
    await symlink('busybox', join(root, 'bin', applet))
  }
  await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
  await writeFile(join(root, 'etc', 'hostname'), 'shoal\n')
  await link(join(root, 'etc', 'hostname'), join(root, 'etc', 'hostname.hardlink'))
  await symlink('/etc/passwd', join(root, 'etc', 'passwd.link'))
  await symlink('../nowhere', join(root, 'etc', 'dangling'))
  await writeFile(join(root, 'data', 'empty'), '')
  await writeFile(join(root, 'data', 'random-3m'), randomBytes(3 * 1024 * 1024 + 12345))
  await writeFile(join(root, 'data', 'repeated'), Buffer.alloc(2 * 1024 * 1024, 'ab'))
  await writeFile(join(root, 'data', 'sparse'), 'head')
  await truncate(join(root, 'data', 'sparse'), 5 * 1024 * 1024)
  await writeFile(join(root, 'data', 'deep', 'er', 'still', 'x'.repeat(200)), 'long name\n')
  await writeFile(join(root, 'data', 'owned'), 'owned by 1234:5678\n')
  await chown(join(root, 'data', 'owned'), 1234, 5678)
  await writeFile(join(root, 'data', 'setuid'), '#!/bin/sh\n')
  await chmod(join(root, 'data', 'setuid'), 0o4755)
  await writeFile(join(root, 'data', 'xattrs'), 'with xattrs\n')
  await run('setfattr', ['-n', 'user.shoal', '-v', 'lazy', join(root, 'data', 'xattrs')])
  await run('setfattr', ['-n', 'trusted.shoal', '-v', '0x00ff10', join(root, 'data', 'xattrs')])
  await run('setfattr', ['-n', 'user.dir', '-v', 'yes', join(root, 'data')])
  await run('mknod', [join(root, 'dev', 'null'), 'c', '1', '3'])
  await run('mknod', [join(root, 'dev', 'loop9'), 'b', '7', '9'])
  await run('mkfifo', [join(root, 'tmp', 'fifo')])
  await chmod(join(root, 'tmp'), 0o1777)
  await lutimes(join(root, 'etc', 'passwd'), 1_600_000_000.25, 1_600_000_000.25)
}
