// The js-libp2p peer of scripts/interop.sh: a plain js-libp2p 3.x node (TCP, noise, yamux,
// ping, identify) that does not run the connection manager, driven by commands on stdin and
// reporting what happened as one JSON object per line on stdout.
//
// Usage: node peer.mjs [--listen MULTIADDR] [--key FILE] [--stream-on-connect]
//   --listen MULTIADDR    listen address (default /ip4/127.0.0.1/tcp/0)
//   --key FILE            keep the identity (a protobuf-encoded Ed25519 key) in FILE, created
//                         if missing, so that a restarted peer has the same peer id; a new
//                         one is drawn in the middle of the peer id order (see middleKey)
//   --stream-on-connect   on every new connection, open a ping stream on that connection
//                         right away and ping once over it (reported as "stream")
//
// Commands (one a line on stdin):
//   dial MULTIADDR        libp2p.dial: "dial" with ok, conn, or error
//   ping MULTIADDR        the ping service (a new connection if the address has no peer id):
//                         "ping" with ok, rtt, or error
//   hangup PEER_ID        libp2p.hangUp: "hangup" with ok or error
//   conns                 "conns": open connections per peer
//   stop                  libp2p.stop(), then "stopped" and exit 0
// Events: "ready" (peer id and listen addresses), "open" and "close" for every connection
// (close with the error that ended it, if any, and whether it was closed locally).
import { readFileSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'

// js-libp2p 3.x uses Promise.withResolvers (Node 22); Node 20 lacks it. The libraries are
// imported after this, dynamically, so that they see it.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { ping } = await import('@libp2p/ping')
const { identify } = await import('@libp2p/identify')
const { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } = await import('@libp2p/crypto/keys')
const { peerIdFromString } = await import('@libp2p/peer-id')
const { multiaddr } = await import('@multiformats/multiaddr')

const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const OPERATION_TIMEOUT_MS = 10000

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, t: Date.now(), ...fields }) + '\n')
}

function describeError (err) {
  if (err == null) return undefined
  // Some operations reject with the event that ended them (e.g. a stream's 'close').
  if (typeof Event !== 'undefined' && err instanceof Event) {
    const inner = describeError(err.error)
    return `${err.constructor?.name ?? 'Event'} '${err.type}'${inner != null ? ` (${inner})` : ''}`
  }
  const name = err.name ?? 'Error'
  const message = err.message ?? String(err)
  return `${name}: ${message}`
}

function parseArgs (argv) {
  const args = { listen: '/ip4/127.0.0.1/tcp/0', key: undefined, streamOnConnect: false }
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--listen': args.listen = argv[++i]; break
      case '--key': args.key = argv[++i]; break
      case '--stream-on-connect': args.streamOnConnect = true; break
      default:
        process.stderr.write(`peer.mjs: unknown argument ${argv[i]}\n`)
        process.exit(2)
    }
  }
  return args
}

// A new kept identity has a public key whose first byte is in the middle of its range:
// rust-libp2p orders peer ids by their bytes, so nodes with a smaller and with a larger peer id
// than this peer's are both common (scripts/interop.sh starts nodes until it has the one it
// needs).
async function middleKey () {
  for (;;) {
    const key = await generateKeyPair('Ed25519')
    const first = key.publicKey.raw[0]
    if (first >= 0x60 && first < 0xa0) return key
  }
}

async function loadKey (path) {
  if (path == null) return generateKeyPair('Ed25519')
  try {
    return privateKeyFromProtobuf(readFileSync(path))
  } catch (err) {
    if (err.code !== 'ENOENT') throw err
  }
  const key = await middleKey()
  writeFileSync(path, privateKeyToProtobuf(key), { mode: 0o600 })
  return key
}

// One ping over this very connection (not one the connection manager picks).
async function pingOver (connection) {
  let timer
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error('no pong within 10 s')), OPERATION_TIMEOUT_MS)
  })
  try {
    const ping = pingOnce(connection)
    ping.catch(() => {}) // after the deadline, its own failure is of no interest
    return await Promise.race([deadline, ping])
  } finally {
    clearTimeout(timer)
  }
}

async function pingOnce (connection) {
  const stream = await connection.newStream(PING_PROTOCOL, { signal: AbortSignal.timeout(OPERATION_TIMEOUT_MS) })
  const data = crypto.getRandomValues(new Uint8Array(32))
  const received = []
  let length = 0
  const started = Date.now()
  const pong = new Promise((resolve, reject) => {
    stream.addEventListener('message', (evt) => {
      const chunk = evt.data.subarray()
      received.push(chunk)
      length += chunk.byteLength
      if (length >= 32) resolve()
    })
    stream.addEventListener('close', (evt) => {
      if (length < 32) reject(evt.error ?? new Error(`stream closed after ${length} of 32 bytes`))
    })
  })
  pong.catch(() => {}) // awaited below, unless send throws first
  stream.send(data)
  await pong
  const rtt = Date.now() - started
  const echoed = Buffer.concat(received).subarray(0, 32)
  if (!echoed.equals(Buffer.from(data))) throw new Error('wrong pong')
  await stream.close({ signal: AbortSignal.timeout(OPERATION_TIMEOUT_MS) })
  return rtt
}

function connectionFields (connection) {
  return {
    peer: connection.remotePeer.toString(),
    conn: connection.id,
    dir: connection.direction,
    remote: connection.remoteAddr.toString()
  }
}

function countConnections (node) {
  const peers = {}
  for (const connection of node.getConnections()) {
    const peer = connection.remotePeer.toString()
    peers[peer] = (peers[peer] ?? 0) + 1
  }
  return peers
}

// A promise of the libraries that fails with nobody waiting is reported, not fatal: the peer
// must keep running for the scenario that follows.
process.on('unhandledRejection', (err) => emit('unhandled', { error: describeError(err) }))

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const privateKey = await loadKey(args.key)
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: [args.listen] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { ping: ping(), identify: identify() },
    // js-libp2p's connection monitor pings every connection every 10 s. rust-libp2p's ping
    // handler serves one inbound ping stream per connection and resets the previous one when
    // another arrives, so a monitor tick in the milliseconds the --stream-on-connect ping runs
    // resets one of the two whatever the node does (scenario b failed 2 runs in 10 on a slow
    // machine, the failures exactly 10 s apart; with the monitor every 7 ms, every run fails).
    // The peer.py equivalent is PING_LOCKS. The scenarios ping where they mean to.
    connectionMonitor: { enabled: false }
  })

  node.addEventListener('connection:open', (evt) => {
    const connection = evt.detail
    const fields = connectionFields(connection)
    emit('open', fields)
    connection.addEventListener('close', (closeEvt) => {
      emit('close', { ...fields, local: closeEvt.local === true, error: describeError(closeEvt.error) ?? null })
    })
    if (args.streamOnConnect) {
      pingOver(connection).then(
        (rtt) => emit('stream', { ...fields, ok: true, rtt }),
        (err) => emit('stream', { ...fields, ok: false, error: describeError(err) })
      )
    }
  })

  emit('ready', {
    id: node.peerId.toString(),
    addrs: node.getMultiaddrs().map((a) => a.toString()),
    version: 'js-libp2p'
  })

  const lines = createInterface({ input: process.stdin })
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await node.stop()
    emit('stopped', { conns: node.getConnections().length })
    process.exit(0)
  }
  for await (const line of lines) {
    const [command, target] = line.trim().split(/\s+/)
    try {
      switch (command) {
        case undefined:
        case '':
          break
        case 'dial': {
          node.dial(multiaddr(target), { signal: AbortSignal.timeout(OPERATION_TIMEOUT_MS) }).then(
            (connection) => emit('dial', { target, ok: true, ...connectionFields(connection) }),
            (err) => emit('dial', { target, ok: false, error: describeError(err) })
          )
          break
        }
        case 'ping': {
          node.services.ping.ping(multiaddr(target), { signal: AbortSignal.timeout(OPERATION_TIMEOUT_MS) }).then(
            (rtt) => emit('ping', { target, ok: true, rtt }),
            (err) => emit('ping', { target, ok: false, error: describeError(err) })
          )
          break
        }
        case 'hangup':
          node.hangUp(peerIdFromString(target)).then(
            () => emit('hangup', { target, ok: true }),
            (err) => emit('hangup', { target, ok: false, error: describeError(err) })
          )
          break
        case 'conns':
          emit('conns', { peers: countConnections(node) })
          break
        case 'stop':
          await stop()
          break
        default:
          emit('refused', { line, error: 'unknown command' })
      }
    } catch (err) {
      emit('refused', { line, error: describeError(err) })
    }
  }
  // stdin ended: stop cleanly.
  await stop()
}

main().catch((err) => {
  emit('fatal', { error: describeError(err) })
  process.exit(1)
})
