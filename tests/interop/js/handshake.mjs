// a. handshake: a raw ClientNode with a token connects and gets synchronized.
import { connectNode, createNode, inFrames, scenario, uniq } from './lib.mjs'

scenario('handshake', async url => {
  let node = createNode(url, uniq('alice'))
  await connectNode(node, 'state synchronized')
  let frames = inFrames(node.frames)
  let connected = frames.find(m => m[0] === 'connected')
  let result = {
    authenticated: node.authenticated,
    connected: connected
      ? {
          length: connected.length,
          nodeId: connected[2],
          options: connected[4] ?? null,
          protocol: connected[1],
          timesOk:
            Array.isArray(connected[3]) &&
            connected[3].length === 2 &&
            connected[3].every(n => Number.isInteger(n)) &&
            connected[3][0] <= connected[3][1]
        }
      : null,
    errors: node.errors,
    inTypes: frames.map(m => m[0]),
    remoteHeaders: node.remoteHeaders,
    remoteNodeId: node.remoteNodeId,
    remoteProtocol: node.remoteProtocol,
    remoteSubprotocol: node.remoteSubprotocol,
    sentConnect: node.frames.find(([d, m]) => d === 'out' && m[0] === 'connect')[1],
    state: node.state,
    states: node.states.slice()
  }
  node.destroy()
  return result
})
