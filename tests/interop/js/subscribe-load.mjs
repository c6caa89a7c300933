// j. subscribe with load: user/<me> sends user/name before logux/processed;
// user/<other> is denied.
import {
  receivedOf,
  scenario,
  startClient,
  subscribe,
  trySync,
  uniq,
  waitUntil
} from './lib.mjs'

function order(client, subscribeId) {
  return client.received
    .map(i => i.action)
    .filter(
      a =>
        a.type === 'user/name' ||
        (a.type === 'logux/processed' && a.id === subscribeId)
    )
    .map(a => a.type)
}

scenario('subscribe-load', async url => {
  let aliceId = uniq('alice')
  let bobId = uniq('bob')
  let alice = await startClient(url, aliceId)

  let subMeta = { id: alice.log.generateId() }
  let first = await subscribe(
    alice,
    `user/${aliceId}`,
    'subscribe own user',
    subMeta
  )
  let firstOrder = order(alice, subMeta.id)
  let firstNames = receivedOf(alice, 'user/name')

  let rename = await trySync(
    alice,
    { name: 'Alice', type: 'CHANGE_NAME', user: aliceId },
    'CHANGE_NAME own'
  )

  // A second client of the same user: its load sees the new name, and its
  // own CHANGE_NAME is resent to the first client (subscribed to user/<me>).
  let alice2 = await startClient(url, aliceId)
  let sub2Meta = { id: alice2.log.generateId() }
  let second = await subscribe(
    alice2,
    `user/${aliceId}`,
    'second client subscribe',
    sub2Meta
  )
  let renameByOther = await trySync(
    alice2,
    { name: 'Alicia', type: 'CHANGE_NAME', user: aliceId },
    'CHANGE_NAME from second client'
  )
  await waitUntil(
    () => receivedOf(alice, 'CHANGE_NAME').length > 0,
    'first client receives CHANGE_NAME of the second one'
  )

  let foreign = await subscribe(alice, `user/${bobId}`, 'subscribe foreign user')
  let foreignRename = await trySync(
    alice,
    { name: 'Bobby', type: 'CHANGE_NAME', user: bobId },
    'CHANGE_NAME foreign'
  )

  let report = {
    first: {
      names: firstNames,
      ok: first.ok,
      order: firstOrder
    },
    foreign: { ok: foreign.ok, reason: foreign.undo?.reason ?? null },
    foreignRename: {
      ok: foreignRename.ok,
      reason: foreignRename.undo?.reason ?? null
    },
    renameByOther: {
      ok: renameByOther.ok,
      receivedByFirst: receivedOf(alice, 'CHANGE_NAME')
    },
    renameOk: rename.ok,
    second: {
      names: receivedOf(alice2, 'user/name'),
      ok: second.ok,
      order: order(alice2, sub2Meta.id)
    }
  }
  alice.destroy()
  alice2.destroy()
  return report
})
