// b. wrong token -> `wrong-credentials`; too old subprotocol ->
// `wrong-subprotocol` {supported, used}. Both through Reconnect, which must
// stop retrying after these fatal errors.
import {
  createNode,
  delay,
  inFrames,
  scenario,
  uniq,
  waitUntil
} from './lib.mjs'

async function attempt(url, opts) {
  let node = createNode(url, uniq('mallory'), { reconnect: true, ...opts })
  node.connection.connect()
  await waitUntil(() => node.errors.length > 0, `error for ${JSON.stringify(opts)}`)
  await waitUntil(() => node.state === 'disconnected', 'disconnected after error')
  // Reconnect (minDelay 100 ms) must not try again after a fatal error.
  await delay(600)
  let result = {
    connectingCount: node.states.filter(s => s === 'connecting').length,
    errors: node.errors,
    inFrames: inFrames(node.frames),
    state: node.state,
    states: node.states
  }
  node.destroy()
  return result
}

scenario('auth-errors', async url => {
  let wrongToken = await attempt(url, { token: 'wrong' })
  let oldSubprotocol = await attempt(url, { subprotocol: 1 })
  return { oldSubprotocol, wrongToken }
})
