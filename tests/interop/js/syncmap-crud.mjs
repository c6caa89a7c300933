// SyncMap create / load / change / delete with the real syncMapTemplate, two
// (then more) clients, plus what the server must refuse.
import {
  buildNewSyncMap,
  changeSyncMap,
  changeSyncMapById,
  createSyncMap,
  deleteSyncMap,
  loadValue
} from '@logux/client'

import {
  delay,
  destroyAll,
  scenario,
  SETTLE_MS,
  startClients,
  trySync,
  uniq,
  waitUntil,
  withTimeout
} from './lib.mjs'
import {
  attempt,
  load,
  mount,
  openClient,
  receivedAbout,
  sentSubscribes,
  sentTime,
  valueOf,
  waitField
} from './syncmap-lib.mjs'

scenario('syncmap-crud', async url => {
  let [alice, bob] = await startClients(url, ['alice', 'bob'], openClient)
  let id = uniq('note')
  let report = {}

  // create → a second client loads it
  report.create = await attempt(
    createSyncMap(alice, alice.Notes, {
      id,
      project: 'p',
      text: 'world',
      title: 'Hello'
    }),
    'createSyncMap'
  )
  let createTime = sentTime(alice, 'notes/create', id)
  let bobStore = bob.Notes(id, bob)
  report.bobLoad = await load(bobStore, 'bob loads the created note')
  report.bobLoadChanged = receivedAbout(bob, 'notes/changed', id)
  report.createTime = createTime

  // change by alice reaches bob (not alice herself)
  let aliceStore = alice.Notes(id, alice)
  report.aliceLoad = await load(aliceStore, 'alice loads her note')
  let aliceChangedBefore = receivedAbout(alice, 'notes/changed', id).length
  let bobChangedBefore = receivedAbout(bob, 'notes/changed', id).length
  report.change = await attempt(
    changeSyncMap(aliceStore, { title: 'Hello 2' }),
    'alice changes title'
  )
  await waitField(bobStore, 'title', 'Hello 2', 'bob sees the new title')
  report.changeTime = sentTime(alice, 'notes/change', id)
  report.bobChanged = receivedAbout(bob, 'notes/changed', id)
  // and the other way round
  report.bobChange = await attempt(
    changeSyncMap(bobStore, { text: 'bob was here' }),
    'bob changes text'
  )
  await waitField(aliceStore, 'text', 'bob was here', 'alice sees bob text')
  // a change the server's `change` answers with False is not resent
  report.quiet = await attempt(
    changeSyncMap(aliceStore, { quiet: true }),
    'quiet change'
  )
  report.afterQuiet = await attempt(
    changeSyncMap(aliceStore, { title: 'Hello 3' }),
    'change after the quiet one'
  )
  await waitField(bobStore, 'title', 'Hello 3', 'bob sees Hello 3')
  // what each got after both loaded: only the other one's changes
  report.aliceGot = receivedAbout(alice, 'notes/changed', id)
    .slice(aliceChangedBefore)
    .map(i => i.fields)
  report.bobGot = receivedAbout(bob, 'notes/changed', id)
    .slice(bobChangedBefore)
    .map(i => i.fields)
  report.bobValue = valueOf(bobStore)
  report.aliceValue = valueOf(aliceStore)

  // a map with fields changed at different times: one changed per time
  let carol = await openClient(url, uniq('carol'))
  report.seeded = await load(carol.Notes('seeded', carol), 'carol loads seeded')
  report.seededChanged = receivedAbout(carol, 'notes/changed', 'seeded')

  // clients may not send the server's own types
  report.clientSent = {}
  for (let type of ['notes/created', 'notes/changed', 'notes/deleted']) {
    let r = await trySync(alice, { fields: { title: 'x' }, id, type }, type)
    report.clientSent[type] = r.ok ? 'processed' : r.undo.reason
  }
  report.bogusPayload = await trySync(
    alice,
    { fields: 'not an object', id, type: 'notes/change' },
    'fields must be an object'
  ).then(r => (r.ok ? 'processed' : r.undo.reason))

  // access and load refusals
  report.secretCreate = await attempt(
    createSyncMap(alice, alice.Notes, { id: uniq('secret'), title: 's' }),
    'create a secret note'
  )
  report.secretLoad = await load(
    alice.Notes(uniq('secret'), alice),
    'load a secret note'
  )
  report.missingLoad = await load(
    alice.Notes(uniq('missing'), alice),
    'load a missing note'
  )
  report.missingValue =
    (await withTimeout(
      loadValue(bob.Notes(uniq('missing'), bob)),
      'loadValue missing'
    )) ?? null

  // buildNewSyncMap: the store subscribes with `creating`, and load is skipped
  let id2 = uniq('built')
  let framesBefore = alice.frames.length
  let receivedBefore = alice.received.length
  let built = await withTimeout(
    buildNewSyncMap(alice, alice.Notes, { id: id2, title: 'Built' }),
    'buildNewSyncMap'
  )
  mount(built)
  await waitUntil(
    () =>
      alice.received
        .slice(receivedBefore)
        .some(i => i.action.type === 'logux/processed') &&
      sentSubscribes(alice, framesBefore).length > 0,
    'built store subscribed'
  )
  await delay(SETTLE_MS)
  report.built = {
    changed: receivedAbout(alice, 'notes/changed', id2),
    subscribes: sentSubscribes(alice, framesBefore),
    value: valueOf(built)
  }
  report.builtByBob = await load(bob.Notes(id2, bob), 'bob loads built note')

  // delete: bob's store learns it; a fresh client finds nothing
  report.delete = await attempt(deleteSyncMap(aliceStore), 'delete')
  await waitUntil(
    () => receivedAbout(bob, 'notes/deleted', id).length > 0,
    'bob receives notes/deleted'
  )
  report.bobDeletedFlag = bobStore.deleted === true
  report.aliceDeletedReceived = receivedAbout(alice, 'notes/deleted', id).length
  report.changeDeleted = await attempt(
    changeSyncMapById(alice, alice.Notes, id, { title: 'ghost' }),
    'change a deleted note'
  )
  let dave = await openClient(url, uniq('dave'))
  report.daveLoad = await load(dave.Notes(id, dave), 'dave loads deleted note')

  report.errors = [alice, bob, carol, dave].flatMap(c => c.errors)
  destroyAll([alice, bob, carol, dave])
  return report
})
