// TLS: the real @logux/client over wss://. Two Clients connect to the server
// (trusting its self-signed certificate through NODE_EXTRA_CA_CERTS), both
// subscribe to one chat; one sends a message: its client.sync() resolves on
// logux/processed and the other Client receives the message.
//
//   node tls-client.mjs wss://127.0.0.1:PORT/            (the scenario)
//   node tls-client.mjs wss://127.0.0.1:PORT/ untrusted  (without the CA: a
//       plain `ws` socket must fail the certificate check, and never open)
import WebSocket from 'ws'

import {
  destroyAll,
  fail,
  finish,
  scenario,
  startClients,
  subscribe,
  textsOf,
  trySync,
  uniq,
  waitUntil
} from './lib.mjs'

if (process.argv[3] === 'untrusted') {
  let url = process.argv[2]
  let socket = new WebSocket(url)
  let timer = setTimeout(() => fail('no TLS error in 10 s'), 10000)
  socket.on('open', () => fail('the socket opened without trusting the certificate'))
  socket.on('error', err => {
    clearTimeout(timer)
    finish({ code: err.code ?? null, message: String(err.message), scenario: 'untrusted' })
  })
} else {
  scenario('tls', async url => {
    if (!url.startsWith('wss://')) throw new Error(`not a wss:// URL: ${url}`)
    let [alice, bob] = await startClients(url, ['tlsalice', 'tlsbob'])
    let room = uniq('tls')
    let channel = `chat/${room}`
    let subscribed = [
      await subscribe(alice, channel, 'alice subscribe'),
      await subscribe(bob, channel, 'bob subscribe')
    ]
    let sent = await trySync(
      alice,
      { chat: room, text: 'over tls', type: 'chat/message' },
      'alice sync'
    )
    await waitUntil(
      () => textsOf(bob, 'chat/message').includes('over tls'),
      'bob receives the message'
    )
    let report = {
      bobTexts: textsOf(bob, 'chat/message'),
      errors: [...alice.errors, ...bob.errors],
      processed: sent.ok,
      states: [alice.state, bob.state],
      subscribed: subscribed.map(r => r.ok),
      connected: [alice.connected, bob.connected],
      url
    }
    destroyAll([alice, bob])
    return report
  })
}
