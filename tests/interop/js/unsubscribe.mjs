// f. unsubscribe: after logux/unsubscribe is processed the client gets no
// more messages of the channel; another subscriber still does.
import {
  delay,
  destroyAll,
  scenario,
  SETTLE_MS,
  startClients,
  subscribe,
  textsOf,
  trySync,
  uniq,
  waitUntil
} from './lib.mjs'

scenario('unsubscribe', async url => {
  let channel = 'chat/' + uniq('room')
  let chat = channel.slice(5)
  let [alice, bob, carol] = await startClients(url, ['alice', 'bob', 'carol'])
  await subscribe(alice, channel, 'alice subscribe')
  await subscribe(bob, channel, 'bob subscribe')
  let texts = c => textsOf(c, 'chat/message')

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
  destroyAll([alice, bob, carol])
  return report
})
