/**
 * The configuration file of the CNCF registry (Debian's `docker-registry serve FILE`) as tests,
 * benchmarks and the demo start it: filesystem storage, one listen address, quiet logs.
 */
export interface DockerRegistryConfigInit {
  /** Directory the registry stores its data in. */
  root: string
  /** `HOST:PORT` to listen on. */
  address: string
  /** Secret uploads are signed with; a fixed one also silences the startup warning. */
  secret: string
  /** Let clients delete manifests and blobs. */
  allowDelete?: boolean
  /** Basic auth from an htpasswd file (bcrypt lines). */
  htpasswd?: { realm: string, path: string }
}

export function dockerRegistryConfig (init: DockerRegistryConfigInit): string {
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${init.root}`,
    ...(init.allowDelete === true ? ['  delete:', '    enabled: true'] : []),
    'http:',
    `  addr: ${init.address}`,
    `  secret: ${init.secret}`,
    ...(init.htpasswd != null ? ['auth:', '  htpasswd:', `    realm: ${init.htpasswd.realm}`, `    path: ${init.htpasswd.path}`] : []),
    ''
  ].join('\n')
}
