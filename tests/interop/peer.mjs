// A js-libp2p peer (TCP, Noise, yamux, identify, ping) for tests/test_libp2p_interop.py.
// Usage: node peer.mjs <multiaddr of our node>
// Prints one JSON object per line: listening, connected, identified, pinged, hung_up, inbound;
// then waits until stdin closes (our node dials it meanwhile) and exits.
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const target = multiaddr(process.argv[2])

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})
node.addEventListener('connection:open', (event) => {
  const conn = event.detail
  if (conn.direction === 'inbound') {
    out({ event: 'inbound', remote: conn.remotePeer.toString(), encryption: conn.encryption,
          multiplexer: conn.multiplexer })
  }
})
const identified = new Promise((resolve) => {
  node.addEventListener('peer:identify', (event) => resolve(event.detail))
})
await node.start()
out({ event: 'listening', peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })

const conn = await node.dial(target)
out({ event: 'connected', remote: conn.remotePeer.toString(), encryption: conn.encryption,
      multiplexer: conn.multiplexer })
const result = await Promise.race([identified, new Promise((resolve) => setTimeout(resolve, 10000))])
out({ event: 'identified', remote: result ? result.peerId.toString() : null,
      protocols: result ? result.protocols : [], agent: result ? result.agentVersion : null })
const rtt = await node.services.ping.ping(target)
out({ event: 'pinged', rtt_ms: rtt })
await node.hangUp(target)   // so that our node's dial opens a connection of its own
out({ event: 'hung_up' })

process.stdin.resume()
await new Promise((resolve) => process.stdin.on('end', resolve))
await node.stop()
