// d. every undo reason, observed through Client.sync() -> LoguxUndoError.
// Actions are sent one after another: a Logux server undoes the actions
// queued behind a failed one with `error`.
import { scenario, startClient, trySync, uniq } from './lib.mjs'

const BASE_KEYS = ['action', 'id', 'reason', 'type']

function describe(result, sent) {
  if (result.ok) return { ok: true, sent }
  let undo = result.undo
  return {
    errorName: result.errorName,
    extraKeys: Object.keys(undo).filter(k => !BASE_KEYS.includes(k)).sort(),
    ok: false,
    reason: undo.reason,
    sent,
    undo,
    undoneType: undo.action ? undo.action.type : null
  }
}

scenario('undo', async url => {
  let client = await startClient(url, uniq('alice'))
  let room = uniq('room')
  let cases = {
    channelDenied: { channel: 'chat/secret', type: 'logux/subscribe' },
    denied: { type: 'denied/action' },
    invalidTextMissing: { chat: room, type: 'chat/message' },
    invalidTextNumber: { chat: room, text: 42, type: 'chat/message' },
    loadError: { channel: 'chat/broken', type: 'logux/subscribe' },
    notFound: { channel: 'chat/missing', type: 'logux/subscribe' },
    processError: { chat: room, text: 'fail', type: 'chat/message' },
    unknownType: { type: 'nobody/knows' },
    wrongChannel: { channel: 'nowhere/1', type: 'logux/subscribe' }
  }
  let results = {}
  for (let [name, action] of Object.entries(cases)) {
    results[name] = describe(await trySync(client, action, name), action)
  }
  // the client must still work after all these undos
  let ok = { chat: room, text: 'ok', type: 'chat/message' }
  results.afterwards = describe(await trySync(client, ok), ok)
  client.destroy()
  return { results }
})
