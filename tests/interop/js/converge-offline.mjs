// The @logux/client side of tests/client/test_convergence.py, with bob the
// one offline: bob loads the `notes` SyncMap `id`, goes offline and edits
// `text` and `color`; the Python client meanwhile edits `text` (later) and
// `title` online; bob comes back and waits for the Python client's fields.
// argv: url, id, the fields the Python client's edits must bring (JSON).
//
// Progress lines (say): {"phase":"offline-edited", times} after bob's offline
// edits; then it reads "online" from stdin and reconnects. The last line is
// the report; carol (a fresh client) loads what the server kept.
import { changeSyncMap } from '@logux/client'
import { createInterface } from 'node:readline'

import {
  delay,
  destroyAll,
  goOffline,
  goOnline,
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

scenario('converge-offline', async url => {
  let id = process.argv[3]
  let expected = JSON.parse(process.argv[4])
  let report = {}
  let bob = await openClient(url, uniq('bob'))
  let store = bob.Notes(id, bob)
  report.bobLoad = await load(store, 'bob loads')

  await goOffline(bob, 'bob')
  let text = changeSyncMap(store, { text: 'bob offline text' })
  let color = changeSyncMap(store, { color: 'bob color' })
  report.bobOptimistic = valueOf(store)
  await waitUntil(
    () => bob.sent.filter(i => i.action.type === 'notes/change').length === 2,
    'both offline changes in the log'
  )
  report.bobTimes = bob.sent
    .filter(i => i.action.type === 'notes/change')
    .map(i => ({ fields: i.action.fields, time: i.time }))
  say({ phase: 'offline-edited', times: report.bobTimes })

  let command = await nextLine('the online command')
  if (command !== 'online') throw new Error(`unexpected command ${command}`)
  await goOnline(bob, 'bob')
  report.text = await attempt(text, 'offline text processed')
  report.color = await attempt(color, 'offline color processed')
  await waitUntil(
    () => Object.keys(expected).every(k => store.get()[k] === expected[k]),
    'bob gets the online edits'
  )
  await delay(SETTLE_MS)
  report.bobValue = valueOf(store)

  let carol = await openClient(url, uniq('carol'))
  report.carolLoad = await load(carol.Notes(id, carol), 'carol loads')
  report.errors = [bob, carol].flatMap(c => c.errors)
  lines.close()
  destroyAll([bob, carol])
  return report
})
