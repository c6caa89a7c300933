// createFilter against addSyncMapFilter: the initial list (each item with a
// server-side subscription, logux/subscribed), later creates matching the
// filter (and not the others), changes moving an item out, deletes, a denied
// filter, and the list after a reconnect.
import {
  changeSyncMapById,
  createFilter,
  createSyncMap,
  deleteSyncMapById
} from '@logux/client'

import {
  delay,
  destroyAll,
  goOffline,
  goOnline,
  scenario,
  SETTLE_MS,
  startClients,
  uniq,
  waitUntil
} from './lib.mjs'
import {
  attempt,
  loaded,
  openClient,
  receivedTypes
} from './syncmap-lib.mjs'

function listOf(filter) {
  return filter
    .get()
    .list.map(({ isLoading, ...value }) => value)
    .sort((a, b) => (a.id < b.id ? -1 : 1))
}

function idsOf(filter) {
  return listOf(filter).map(i => i.id)
}

scenario('syncmap-filter', async url => {
  let [alice, bob] = await startClients(url, ['alice', 'bob'], openClient)
  let project = uniq('proj')
  let other = uniq('other')
  let n = name => `${name}-${project}`
  let report = { ids: {} }
  for (let name of ['n1', 'n2', 'n3', 'n4', 'n5', 'n6']) report.ids[name] = n(name)

  let create = (name, fields) =>
    attempt(
      createSyncMap(alice, alice.Notes, { id: n(name), ...fields }),
      `create ${name}`
    )
  await create('n1', { project, title: 'one' })
  await create('n2', { project, title: 'two' })
  await create('n3', { project: other, title: 'three' })
  // n6 joins the project by a later change: its fields have two change times
  await create('n6', { project: other, title: 'six' })
  await delay(5)
  await attempt(
    changeSyncMapById(alice, alice.Notes, n('n6'), { project }),
    'n6 joins'
  )

  let filter = createFilter(bob, bob.Notes, { project })
  report.load = await loaded(filter, 'filter loads')
  await waitUntil(() => idsOf(filter).length >= 3, 'initial list of 3')
  await delay(SETTLE_MS)
  report.initial = listOf(filter)
  report.subscribed = receivedTypes(bob, ['logux/subscribed'])
    .map(a => a.channel)
    .sort()
  report.initialChanged = receivedTypes(bob, ['notes/changed'])
    .map(a => a.id)
    .sort()

  // later creates: only the matching one reaches bob at all
  await create('n4', { project, title: 'four' })
  await create('n5', { project: other, title: 'five' })
  await waitUntil(() => idsOf(filter).includes(n('n4')), 'n4 listed')
  await delay(SETTLE_MS)
  report.afterCreates = idsOf(filter)
  report.createdReceived = receivedTypes(bob, ['notes/created']).map(a => a.id)

  // a change of a listed item shows; a change moving one out removes it
  await attempt(
    changeSyncMapById(alice, alice.Notes, n('n1'), { title: 'one!' }),
    'n1 title'
  )
  await attempt(
    changeSyncMapById(alice, alice.Notes, n('n2'), { project: other }),
    'n2 leaves'
  )
  await waitUntil(
    () =>
      !idsOf(filter).includes(n('n2')) &&
      listOf(filter).some(i => i.title === 'one!'),
    'n1 renamed and n2 gone'
  )
  report.afterChanges = listOf(filter)

  // deletes: an initial item (server-side subscription) and a created one
  await attempt(deleteSyncMapById(alice, alice.Notes, n('n1')), 'delete n1')
  await attempt(deleteSyncMapById(alice, alice.Notes, n('n4')), 'delete n4')
  await waitUntil(
    () => !idsOf(filter).includes(n('n1')) && !idsOf(filter).includes(n('n4')),
    'n1 and n4 gone'
  )
  report.afterDeletes = idsOf(filter)

  // after a reconnect the list still follows the server
  await goOffline(bob, 'bob')
  await goOnline(bob, 'bob')
  await delay(SETTLE_MS)
  await attempt(
    changeSyncMapById(alice, alice.Notes, n('n6'), { title: 'six!' }),
    'n6 title after reconnect'
  )
  await waitUntil(
    () => listOf(filter).some(i => i.title === 'six!'),
    'after reconnect: n6 renamed'
  )
  await attempt(deleteSyncMapById(alice, alice.Notes, n('n6')), 'delete n6')
  await create('n7', { project, title: 'seven' })
  await waitUntil(
    () => idsOf(filter).includes(n('n7')) && !idsOf(filter).includes(n('n6')),
    'after reconnect: n7 listed, n6 deleted'
  )
  report.afterReconnect = listOf(filter)

  // a filter the access callback refuses
  report.denied = await loaded(
    createFilter(bob, bob.Notes, { project, secret: true }),
    'denied filter'
  )

  report.errors = [alice, bob].flatMap(c => c.errors)
  destroyAll([alice, bob])
  return report
})
