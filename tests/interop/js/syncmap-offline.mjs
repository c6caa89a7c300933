// SyncMap changes made while the client is offline: they are applied at once
// locally, sent on reconnect, reach the server and a second client; what the
// second client changed meanwhile reaches the first one through its
// resubscription. Per-field last-writer-wins by the change's own time: an
// offline change older than an online one loses on the server and on both
// clients.
import { changeSyncMap, createSyncMap } from '@logux/client'

import {
  delay,
  destroyAll,
  goOffline,
  goOnline,
  scenario,
  SETTLE_MS,
  startClients,
  uniq
} from './lib.mjs'
import {
  attempt,
  load,
  openClient,
  receivedAbout,
  sentSubscribes,
  valueOf,
  waitField
} from './syncmap-lib.mjs'

scenario('syncmap-offline', async url => {
  let [alice, bob] = await startClients(url, ['alice', 'bob'], openClient)
  let id = uniq('note')
  let report = {}
  report.create = await attempt(
    createSyncMap(alice, alice.Notes, {
      color: 'white',
      id,
      text: 'start',
      title: 'Start'
    }),
    'create'
  )
  let aliceStore = alice.Notes(id, alice)
  let bobStore = bob.Notes(id, bob)
  report.aliceLoad = await load(aliceStore, 'alice loads')
  report.bobLoad = await load(bobStore, 'bob loads')

  // alice goes offline and edits
  await goOffline(alice, 'alice')
  let offlineTitle = changeSyncMap(aliceStore, { title: 'Offline title' })
  let offlineText = changeSyncMap(aliceStore, { text: 'alice offline text' })
  report.aliceOptimistic = valueOf(aliceStore)
  let settled = false
  offlineTitle.then(() => {
    settled = true
  })
  await delay(SETTLE_MS)
  let offline = alice.sent.filter(i => i.action.type === 'notes/change')
  report.offlineTimes = offline.map(i => ({ fields: i.action.fields, time: i.time }))
  report.settledWhileOffline = settled
  report.bobWhileAliceOffline = valueOf(bobStore)

  // bob edits meanwhile: `text` later than alice's offline edit, and `color`
  await delay(5)
  report.bobText = await attempt(
    changeSyncMap(bobStore, { text: 'bob online text' }),
    'bob changes text'
  )
  report.bobColor = await attempt(
    changeSyncMap(bobStore, { color: 'blue' }),
    'bob changes color'
  )
  report.bobTimes = bob.sent
    .filter(i => i.action.type === 'notes/change')
    .map(i => ({ fields: i.action.fields, time: i.time }))

  // alice comes back
  let framesBefore = alice.frames.length
  await goOnline(alice, 'alice')
  report.offlineTitle = await attempt(offlineTitle, 'offline title processed')
  report.offlineText = await attempt(offlineText, 'offline text processed')
  await waitField(bobStore, 'title', 'Offline title', 'bob sees offline title')
  await waitField(aliceStore, 'color', 'blue', 'alice gets bob color')
  await waitField(aliceStore, 'text', 'bob online text', 'alice gets bob text')
  await delay(SETTLE_MS)
  report.resubscribes = sentSubscribes(alice, framesBefore).map(a => ({
    channel: a.channel,
    hasSince: !!a.since
  }))
  report.aliceValue = valueOf(aliceStore)
  report.bobValue = valueOf(bobStore)
  report.bobGot = receivedAbout(bob, 'notes/changed', id)

  // what the server kept
  let carol = await openClient(url, uniq('carol'))
  report.carolLoad = await load(carol.Notes(id, carol), 'carol loads')

  report.errors = [alice, bob, carol].flatMap(c => c.errors)
  destroyAll([alice, bob, carol])
  return report
})
