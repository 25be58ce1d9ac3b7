import { UnsafeLayerPathError } from './errors.js'

/**
 * Splits a tar entry name into components below the layer root. Leading `/` and `./` mean the
 * root (OCI layers are always relative to it), `.` and empty components vanish, `..` pops one
 * component; a `..` with nothing left to pop escapes the root and is refused. `[]` is the root.
 */
export function normalizeLayerPath (raw: string, entryPath: string = raw): string[] {
  if (raw.includes('\0')) throw new UnsafeLayerPathError(entryPath, 'contains a NUL byte')
  const parts: string[] = []
  for (const component of raw.split('/')) {
    if (component === '' || component === '.') continue
    if (component === '..') {
      if (parts.length === 0) throw new UnsafeLayerPathError(entryPath, `${JSON.stringify(raw)} escapes the layer root through '..'`)
      parts.pop()
      continue
    }
    parts.push(component)
  }
  return parts
}

export function joinLayerPath (parts: readonly string[]): string {
  return '/' + parts.join('/')
}
