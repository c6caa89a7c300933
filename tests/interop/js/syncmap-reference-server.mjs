// The SyncMap test app of tests/interop/syncmap_app.py on @logux/server
// 0.14.0 (addSyncMap / addSyncMapFilter), to check the syncmap-*.mjs
// scenarios against the reference: LOGSYNC_INTEROP_TARGET=reference.
//
// Usage: node syncmap-reference-server.mjs [PORT]; prints `listening <port>`.
import { LoguxNotFoundError } from '@logux/actions'
import {
  addSyncMap,
  addSyncMapFilter,
  ChangedAt,
  NoConflictResolution,
  Server
} from '@logux/server'

const port = Number(process.argv[2] || process.env.PORT || 31337)
const noop = () => {}

const server = new Server({
  env: 'production',
  host: '127.0.0.1',
  logger: { debug: noop, error: noop, fatal: noop, info: noop, warn: noop },
  minSubprotocol: 2,
  port,
  subprotocol: 3
})

server.auth(({ token }) => token === 'secret')

// id → field → [value, time]
const notes = new Map([
  [
    'seeded',
    {
      color: ['red', 3000],
      project: ['seed', 1000],
      text: ['first text', 2000],
      title: ['Seeded', 1000]
    }
  ]
])

function asMap(id) {
  let result = {}
  for (let [key, [value, time]] of Object.entries(notes.get(id))) {
    result[key] = ChangedAt(value, time)
  }
  if (id === 'seeded') result.kind = NoConflictResolution('sample')
  return result
}

addSyncMap(server, 'notes', {
  access(ctx, id) {
    return !id.startsWith('secret')
  },
  change(ctx, id, fields, time) {
    let note = notes.get(id)
    if (!note) throw new LoguxNotFoundError()
    for (let [key, value] of Object.entries(fields)) {
      if (!note[key] || note[key][1] <= time) note[key] = [value, time]
    }
    return fields.quiet !== true
  },
  create(ctx, id, fields, time) {
    // any throw in `process` is undo `error` in @logux/server
    if (notes.has(id)) throw new Error('exists')
    let note = {}
    for (let [key, value] of Object.entries(fields)) note[key] = [value, time]
    notes.set(id, note)
  },
  delete(ctx, id) {
    if (!notes.delete(id)) throw new LoguxNotFoundError()
  },
  load(ctx, id) {
    // the reference sends nothing for `false`; throw for undo `notFound`
    if (!notes.has(id)) throw new LoguxNotFoundError()
    return { id, ...asMap(id) }
  }
})

addSyncMapFilter(server, 'notes', {
  access(ctx, filter) {
    return !filter || !('secret' in filter)
  },
  initial(ctx, filter = {}) {
    let list = []
    for (let [id, note] of notes) {
      let ok = Object.entries(filter).every(
        ([key, want]) => note[key] && note[key][0] === want
      )
      if (ok) list.push({ id, ...asMap(id) })
    }
    return list
  }
})

// as syncmap_app.py's `notes/burst`: server-made `notes/changed`, one after another
server.type('notes/burst', {
  access: () => true,
  async process(ctx, action, meta) {
    for (let { fields, id } of action.changes) {
      if (!notes.has(id)) notes.set(id, {})
      let note = notes.get(id)
      for (let [key, value] of Object.entries(fields)) note[key] = [value, meta.time]
      await server.process(
        { burst: true, fields, id, type: 'notes/changed' },
        { channels: ['notes', `notes/${id}`], time: meta.time }
      )
    }
  }
})

await server.listen()
process.stdout.write(`listening ${port}\n`)
