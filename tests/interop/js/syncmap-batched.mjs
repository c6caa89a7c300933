// Live entries offered to one connection in one server loop turn share a
// `sync` — except two changes of the same SyncMap item, which createFilter
// would merge wrongly (it builds the item's store from the first `changed`
// and binds the store's listeners a few microtasks later, after the other
// actions of the same `sync` were added). A server-side burst of
// `notes/changed` (tests/interop/syncmap_app.py's `notes/burst`): three
// rapid changes of item x and one change each of y1…y3, interleaved, to a
// createFilter client; every field must reach its list. (x's store also
// loads itself, which would mend a lost change later: the loss itself shows
// in syncmap-filter.mjs's initial list, whose n6 has two `changed` groups.)
import { createFilter, createSyncMap } from '@logux/client'

import {
  destroyAll,
  scenario,
  startClients,
  uniq,
  waitUntil
} from './lib.mjs'
import { attempt, loaded, openClient } from './syncmap-lib.mjs'

scenario('syncmap-batched', async url => {
  let [alice, bob] = await startClients(url, ['alice', 'bob'], openClient)
  let project = uniq('proj')
  let other = uniq('other')
  let ids = {}
  for (let name of ['x', 'y1', 'y2', 'y3']) {
    ids[name] = `${name}-${project}`
    await attempt(
      createSyncMap(alice, alice.Notes, {
        id: ids[name],
        project: other,
        title: name
      }),
      `create ${name}`
    )
  }
  let filter = createFilter(bob, bob.Notes, { project })
  let load = await loaded(filter, 'filter loads')
  let from = bob.frames.length

  let changes = [
    { fields: { project }, id: ids.x },
    { fields: { project, title: 'y1!' }, id: ids.y1 },
    { fields: { title: 'x!' }, id: ids.x },
    { fields: { project, title: 'y2!' }, id: ids.y2 },
    { fields: { color: 'blue' }, id: ids.x },
    { fields: { project, title: 'y3!' }, id: ids.y3 }
  ]
  let burst = await attempt(
    alice.sync({ changes, type: 'notes/burst' }),
    'burst'
  )
  let complete = () => {
    let list = filter.get().list
    let x = list.find(i => i.id === ids.x)
    return list.length === 4 && x && x.title === 'x!' && x.color === 'blue'
  }
  let listed = true
  try {
    await waitUntil(complete, 'all four listed with every field', 3000)
  } catch {
    listed = false
  }

  // the `sync` frames that carried the burst, as lists of item ids (not the
  // `changed` of a store's own load: each new item's store subscribes to
  // `notes/<id>`)
  let syncs = []
  for (let [dir, msg] of bob.frames.slice(from)) {
    if (dir !== 'in' || msg[0] !== 'sync') continue
    let items = []
    for (let i = 2; i < msg.length; i += 2) {
      if (msg[i].type === 'notes/changed' && msg[i].burst) items.push(msg[i].id)
    }
    if (items.length > 0) syncs.push(items)
  }
  let report = {
    burst,
    errors: [alice, bob].flatMap(c => c.errors),
    ids,
    list: filter
      .get()
      .list.map(({ isLoading, ...value }) => value)
      .sort((a, b) => (a.id < b.id ? -1 : 1)),
    listed,
    load,
    syncs
  }
  destroyAll([alice, bob])
  return report
})
