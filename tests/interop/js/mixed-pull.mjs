// Mixed clients: the socket half. A real @logux/client Client of user
// argv[3] subscribes to chat/argv[4] beside an HTTP pull client that the
// test (tests/interop/test_mixed_pull.py) drives, and then obeys one JSON
// command per stdin line, answering each with a progress line (say()):
//
//   {"cmd":"wait","texts":["h1"]}  -> {"event":"got","texts":[...]} once a
//       chat/message or notify with each text has come in over the socket
//   {"cmd":"send","action":{...}}  -> {"event":"sent","ok":true,"id":"..."}
//       once the server answered the action (ok false with the undo if not)
//   {"cmd":"finish"}               -> the result line, after SETTLE_MS (so a
//       duplicate sent right behind the first copy is seen), then exit 0
//
// The first line is {"event":"ready","nodeId":...,"clientId":...}.
// Result: `wire`, the chat/message and notify actions of every incoming
// `sync` frame in wire order ({added, last, type, text}: `added` is the
// frame's, `last` whether the action is the frame's last), `ids` (text ->
// full action id, of the client's own actions and the received ones alike,
// from the log) and `errors`.
import readline from 'node:readline'

import {
  delay,
  fail,
  say,
  scenario,
  SETTLE_MS,
  startClient,
  subscribe,
  trySync,
  waitUntil
} from './lib.mjs'

const TYPES = new Set(['chat/message', 'notify'])

function wireActions(frames) {
  let list = []
  for (let [dir, msg] of frames) {
    if (dir !== 'in' || !Array.isArray(msg) || msg[0] !== 'sync') continue
    for (let i = 2; i < msg.length; i += 2) {
      let action = msg[i]
      if (!TYPES.has(action.type)) continue
      list.push({
        added: msg[1],
        last: i === msg.length - 2,
        text: action.text,
        type: action.type
      })
    }
  }
  return list
}

scenario('mixed-pull', async url => {
  let userId = process.argv[3]
  let channel = `chat/${process.argv[4]}`
  if (!userId || !process.argv[4]) fail('usage: mixed-pull.mjs URL USER CHAT')
  let client = await startClient(url, userId)
  let ids = {}
  client.on('add', (action, meta) => {
    if (TYPES.has(action.type)) ids[action.text] = meta.id
  })
  let subscribed = await subscribe(client, channel, 'subscribe')
  if (!subscribed.ok) fail(`subscribe ${channel}: ${JSON.stringify(subscribed)}`)
  say({ clientId: client.clientId, event: 'ready', nodeId: client.nodeId })

  let lines = readline.createInterface({ input: process.stdin })
  for await (let line of lines) {
    let command = JSON.parse(line)
    if (command.cmd === 'wait') {
      await waitUntil(() => {
        let texts = new Set(wireActions(client.frames).map(a => a.text))
        return command.texts.every(text => texts.has(text))
      }, `received ${command.texts.join(', ')}`)
      say({ event: 'got', texts: command.texts })
    } else if (command.cmd === 'send') {
      let result = await trySync(client, command.action)
      say({
        event: 'sent',
        id: ids[command.action.text],
        ok: result.ok,
        undo: result.undo
      })
    } else if (command.cmd === 'finish') {
      await delay(SETTLE_MS)
      let report = {
        errors: client.errors,
        ids,
        wire: wireActions(client.frames)
      }
      client.destroy()
      return report
    } else {
      fail(`unknown command ${line}`)
    }
  }
  fail('stdin closed before finish')
})
