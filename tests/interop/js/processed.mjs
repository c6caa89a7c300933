// c. Client.sync() of a valid action resolves when logux/processed arrives.
import {
  inFrames,
  receivedOf,
  scenario,
  startClient,
  trySync,
  uniq
} from './lib.mjs'

scenario('processed', async url => {
  let client = await startClient(url, uniq('alice'))
  let action = { chat: uniq('room'), text: 'hello', type: 'chat/message' }
  let result = await trySync(client, action)
  let processed = receivedOf(client, 'logux/processed')
  let report = {
    ok: result.ok,
    processedFrames: inFrames(client.frames).filter(
      m => m[0] === 'sync' && m[2] && m[2].type === 'logux/processed'
    ),
    processedIds: processed.map(a => a.id),
    received: client.received.map(i => i.action),
    state: client.state,
    undo: result.undo ?? null
  }
  client.destroy()
  return report
})
