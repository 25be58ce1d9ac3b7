/**
 * The two secrets a host keeps: its libp2p private key (so its peer id survives restarts) and
 * the optional swarm key that makes the swarm private (pnet, `/key/swarm/psk/1.0.0/` format).
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { PeerKeyError, SwarmKeyError } from './errors.js'

export const PEER_KEY_FILE = 'peer-key'
const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'

/**
 * Loads the private key saved in `stateDir`, or makes an Ed25519 key and saves it (mode 0600,
 * written to a temporary name and renamed, so a crash never leaves half a key).
 */
export async function loadOrCreatePeerKey (stateDir: string): Promise<PrivateKey> {
  const path = join(stateDir, PEER_KEY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(path)
  } catch (err: any) {
    if (err?.code !== 'ENOENT') throw err
  }
  if (bytes != null) {
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err: any) {
      throw new PeerKeyError(`${path}: not a libp2p private key (${bytes.length} bytes): ${err?.message}`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(stateDir, { recursive: true, mode: 0o700 })
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, privateKeyToProtobuf(key), { mode: 0o600 })
  await rename(temporary, path)
  return key
}

/** A new swarm key in the standard text form (hand the same file to every host of the fleet). */
export function generateSwarmKey (): string {
  return `${SWARM_KEY_HEADER}\n/base16/\n${randomBytes(32).toString('hex')}\n`
}

export async function writeSwarmKey (path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, generateSwarmKey(), { mode: 0o600, flag: 'wx' })
}

/**
 * Checks a swarm key's text and returns the bytes pnet takes (the whole file, as go-libp2p and
 * js-libp2p read it). Throws SwarmKeyError saying which line is wrong.
 */
export function parseSwarmKey (text: Uint8Array | string, where = 'swarm key'): Uint8Array {
  const source = typeof text === 'string' ? text : Buffer.from(text).toString('utf8')
  if (source.length > 1024) throw new SwarmKeyError(`${where}: ${source.length} bytes, a swarm key is under 200`)
  const lines = source.split(/\r?\n/).map(line => line.trim())
  if (lines[0] !== SWARM_KEY_HEADER) {
    throw new SwarmKeyError(`${where}: first line must be ${SWARM_KEY_HEADER}, got ${JSON.stringify(lines[0]?.slice(0, 40))}`)
  }
  if (lines[1] !== '/base16/') {
    throw new SwarmKeyError(`${where}: second line must be /base16/ (the only encoding supported), got ${JSON.stringify(lines[1]?.slice(0, 40))}`)
  }
  const hex = lines[2] ?? ''
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new SwarmKeyError(`${where}: third line must be 64 hex digits (32 bytes), got ${hex.length} characters`)
  }
  return Buffer.from(`${SWARM_KEY_HEADER}\n/base16/\n${hex.toLowerCase()}`, 'utf8')
}

export async function readSwarmKey (path: string): Promise<Uint8Array> {
  return parseSwarmKey(await readFile(path), path)
}
