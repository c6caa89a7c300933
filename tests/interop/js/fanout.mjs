// e. fan-out: two subscribers get the sender's chat/message; the sender (also
// subscribed) gets only its logux/processed, not its own action back.
import {
  delay,
  destroyAll,
  receivedOf,
  scenario,
  SETTLE_MS,
  startClients,
  subscribe,
  syncActions,
  trySync,
  uniq,
  waitUntil
} from './lib.mjs'

scenario('fanout', async url => {
  let channel = 'chat/' + uniq('room')
  let chat = channel.slice(5)
  let [alice, bob, carol] = await startClients(url, ['alice', 'bob', 'carol'])
  let subscribed = {}
  for (let [name, c] of Object.entries({ alice, bob, carol })) {
    subscribed[name] = (await subscribe(c, channel, `${name} subscribe`)).ok
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
      .flatMap(c => syncActions(c.frames))
      .filter(([action]) => action.type === 'chat/message')
      .map(([, meta]) => Object.keys(meta).sort()),
    bobChat: chatOf(bob),
    carolChat: chatOf(carol),
    carolReceivedTypes: carol.received.map(i => i.action.type),
    sentOk: sent.ok,
    subscribed
  }
  destroyAll([alice, bob, carol])
  return report
})
