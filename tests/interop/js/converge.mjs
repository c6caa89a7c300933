// The @logux/client side of tests/client/test_convergence.py: bob edits the
// `notes` SyncMap `id` while the Python client is offline, then waits for the
// Python client's offline edits; carol (a fresh client) loads what the server
// kept. argv: url, id, the fields the Python client's edits must bring (JSON).
//
// Progress lines (say): {"phase":"loaded"} once bob has the map; then it reads
// "edit" from stdin, changes `text`, `color` and `size`, and says
// {"phase":"edited"}. The last line is the report.
import { changeSyncMap } from '@logux/client'
import { createInterface } from 'node:readline'

import {
  delay,
  destroyAll,
  say,
  scenario,
  SETTLE_MS,
  uniq,
  waitUntil,
  withTimeout
} from './lib.mjs'
import { attempt, load, openClient, valueOf } from './syncmap-lib.mjs'

let lines = createInterface({ input: process.stdin })
let waiting = []
lines.on('line', line => {
  let next = waiting.shift()
  if (next) next(line.trim())
})
function nextLine(label) {
  return withTimeout(new Promise(resolve => waiting.push(resolve)), label)
}

scenario('converge', async url => {
  let id = process.argv[3]
  let expected = JSON.parse(process.argv[4])
  let report = {}
  let bob = await openClient(url, uniq('bob'))
  let store = bob.Notes(id, bob)
  report.bobLoad = await load(store, 'bob loads')
  say({ phase: 'loaded', value: valueOf(store) })

  let command = await nextLine('the edit command')
  if (command !== 'edit') throw new Error(`unexpected command ${command}`)
  report.text = await attempt(changeSyncMap(store, { text: 'bob text' }), 'text')
  report.color = await attempt(changeSyncMap(store, { color: 'bob color' }), 'color')
  report.size = await attempt(changeSyncMap(store, { size: 5 }), 'size')
  report.bobTimes = bob.sent
    .filter(i => i.action.type === 'notes/change')
    .map(i => ({ fields: i.action.fields, time: i.time }))
  say({ phase: 'edited' })

  // the Python client comes back online: its edits reach bob
  await waitUntil(
    () => Object.keys(expected).every(k => store.get()[k] === expected[k]),
    'bob gets the offline edits'
  )
  await delay(SETTLE_MS)
  report.bobValue = valueOf(store)
  report.bobGot = bob.received
    .filter(i => i.action.type === 'notes/changed' && i.action.id === id)
    .map(i => ({ fields: i.action.fields, time: i.meta.time }))

  let carol = await openClient(url, uniq('carol'))
  report.carolLoad = await load(carol.Notes(id, carol), 'carol loads')
  report.errors = [bob, carol].flatMap(c => c.errors)
  lines.close()
  destroyAll([bob, carol])
  return report
})
