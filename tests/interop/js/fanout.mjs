// e. fan-out: two subscribers get the sender's chat/message; the sender (also
// subscribed) gets only its logux/processed, not its own action back.
import {
  delay,
  inFrames,
  receivedOf,
  scenario,
  SETTLE_MS,
  startClient,
  trySync,
  uniq,
  waitUntil
} from './lib.mjs'

scenario('fanout', async url => {
  let channel = 'chat/' + uniq('room')
  let chat = channel.slice(5)
  let [alice, bob, carol] = await Promise.all([
    startClient(url, uniq('alice')),
    startClient(url, uniq('bob')),
    startClient(url, uniq('carol'))
  ])
  let subscribed = {}
  for (let [name, c] of Object.entries({ alice, bob, carol })) {
    subscribed[name] = (
      await trySync(c, { channel, type: 'logux/subscribe' }, `${name} subscribe`)
    ).ok
  }
  let sent = await trySync(carol, { chat, text: 'hi all', type: 'chat/message' })
  await waitUntil(
    () =>
      receivedOf(alice, 'chat/message').length > 0 &&
      receivedOf(bob, 'chat/message').length > 0,
    'subscribers receive chat/message'
  )
  await delay(SETTLE_MS)
  let chatOf = c => receivedOf(c, 'chat/message')
  let report = {
    aliceChat: chatOf(alice),
    // meta keys of chat/message as they were on the wire (outbound filter)
    wireMetaKeys: [alice, bob]
      .flatMap(c => inFrames(c.frames))
      .filter(m => m[0] === 'sync')
      .flatMap(m => {
        let keys = []
        for (let i = 2; i < m.length; i += 2) {
          if (m[i].type === 'chat/message') keys.push(Object.keys(m[i + 1]).sort())
        }
        return keys
      }),
    bobChat: chatOf(bob),
    carolChat: chatOf(carol),
    carolReceivedTypes: carol.received.map(i => i.action.type),
    sentOk: sent.ok,
    subscribed
  }
  for (let c of [alice, bob, carol]) c.destroy()
  return report
})
