import { ShoalError } from '@shoal/interface'

/** Bytes from a peer that break the chunk protocol: a bad frame, a wrong index, a lying size. */
export class SwarmProtocolError extends ShoalError {
  override name = 'SwarmProtocolError'
  override readonly code: string = 'ERR_SWARM_PROTOCOL'
}

/** A frame longer than the limit for its kind; we stop reading before allocating it. */
export class FrameTooLargeError extends SwarmProtocolError {
  override name = 'FrameTooLargeError'
  override readonly code = 'ERR_SWARM_FRAME_TOO_LARGE'
}

/** The stream ended in the middle of a frame or before every requested chunk was answered. */
export class StreamTruncatedError extends SwarmProtocolError {
  override name = 'StreamTruncatedError'
  override readonly code = 'ERR_SWARM_STREAM_TRUNCATED'
}

/** The peer answered with an ERROR frame (busy, bad request); not a reason to distrust it. */
export class PeerRefusedError extends ShoalError {
  override name = 'PeerRefusedError'
  override readonly code = 'ERR_SWARM_PEER_REFUSED'
  constructor (readonly peer: string, readonly errorCode: number, detail: string) {
    super(`peer ${peer} refused the request: code ${errorCode} (${detail})`)
  }
}

/** A swarm key file that is not in the `/key/swarm/psk/1.0.0/` format. */
export class SwarmKeyError extends ShoalError {
  override name = 'SwarmKeyError'
  override readonly code = 'ERR_SWARM_KEY'
}

/** A peer key file that does not hold a libp2p private key. */
export class PeerKeyError extends ShoalError {
  override name = 'PeerKeyError'
  override readonly code = 'ERR_SWARM_PEER_KEY'
}
