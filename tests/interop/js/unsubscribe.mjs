// f. unsubscribe: after logux/unsubscribe is processed the client gets no
// more messages of the channel; another subscriber still does.
import {
  delay,
  receivedOf,
  scenario,
  SETTLE_MS,
  startClient,
  trySync,
  uniq,
  waitUntil
} from './lib.mjs'

scenario('unsubscribe', async url => {
  let channel = 'chat/' + uniq('room')
  let chat = channel.slice(5)
  let [alice, bob, carol] = await Promise.all([
    startClient(url, uniq('alice')),
    startClient(url, uniq('bob')),
    startClient(url, uniq('carol'))
  ])
  await trySync(alice, { channel, type: 'logux/subscribe' }, 'alice subscribe')
  await trySync(bob, { channel, type: 'logux/subscribe' }, 'bob subscribe')
  let texts = c => receivedOf(c, 'chat/message').map(a => a.text)

  await trySync(carol, { chat, text: 'one', type: 'chat/message' })
  await waitUntil(
    () => texts(alice).includes('one') && texts(bob).includes('one'),
    'both receive "one"'
  )
  let unsubscribed = await trySync(
    bob,
    { channel, type: 'logux/unsubscribe' },
    'bob unsubscribe'
  )
  await trySync(carol, { chat, text: 'two', type: 'chat/message' })
  await waitUntil(() => texts(alice).includes('two'), 'alice receives "two"')
  await delay(SETTLE_MS)
  let report = {
    alice: texts(alice),
    bob: texts(bob),
    unsubscribeOk: unsubscribed.ok,
    unsubscribeUndo: unsubscribed.undo ?? null
  }
  for (let c of [alice, bob, carol]) c.destroy()
  return report
})
