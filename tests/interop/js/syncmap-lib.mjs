// Helpers of the SyncMap scenarios (syncmap-*.mjs): real @logux/client
// syncMapTemplate / createFilter stores against the `notes` SyncMap of
// tests/interop/syncmap_app.py (or syncmap-reference-server.mjs).
import { parseId } from '@logux/core'
import { syncMapTemplate } from '@logux/client'

import {
  createClient,
  inFrames,
  settle,
  synchronized,
  syncActions,
  waitUntil
} from './lib.mjs'

// A started Client with its own `notes` template (templates cache their
// stores per template object: two clients must not share one) and `sent`,
// this client's own actions with their meta id/time.
//
// Its socket dispatches one received frame per event-loop turn, as browsers
// do. Node's `ws` by default emits every frame of one TCP chunk in the same
// tick; then createFilter builds an item's store from the first
// `notes/changed` and misses the next ones of the same item (the store's
// listeners are only bound a few microtasks later).
export async function openClient(url, userId) {
  let client = createClient(url, userId)
  client.node.connection.connection.opts = { allowSynchronousEvents: false }
  client.start()
  await synchronized(client, userId)
  client.Notes = syncMapTemplate('notes')
  client.sent = []
  client.log.on('add', (action, meta) => {
    if (parseId(meta.id).clientId === client.clientId) {
      client.sent.push({ action, id: meta.id, time: meta.time })
    }
  })
  return client
}

// Keep a store mounted (subscribed) until the returned function is called.
export function mount(store) {
  return store.listen(() => {})
}

// The map's fields as the store has them (without isLoading).
export function valueOf(store) {
  let { isLoading, ...fields } = store.get()
  return fields
}

// Await a sync-map operation's promise: {ok:true} or {ok:false, reason}.
export async function attempt(promise, label) {
  let result = await settle(promise, label)
  return result.ok ? { ok: true } : { ok: false, reason: result.undo.reason }
}

// Mount a store (or a filter) and wait for its first load: {ok:true} or
// {ok:false, reason}.
export function loaded(store, label) {
  mount(store)
  return attempt(store.loading, label)
}

// Mount and wait for the first load: {ok, value} or {ok:false, reason}.
export async function load(store, label) {
  let result = await loaded(store, label)
  return result.ok ? { ok: true, value: valueOf(store) } : result
}

// Actions of `type` about map `id` this client received from the server,
// with their meta time.
export function receivedAbout(client, type, id) {
  return client.received
    .filter(i => i.action.type === type && i.action.id === id)
    .map(i => ({ fields: i.action.fields, time: i.meta.time }))
}

export function receivedTypes(client, types) {
  return client.received
    .map(i => i.action)
    .filter(a => types.includes(a.type))
}

// meta.time of this client's own last action of `type` about `id`.
export function sentTime(client, type, id) {
  let found = client.sent.filter(
    i => i.action.type === type && i.action.id === id
  )
  return found.length > 0 ? found[found.length - 1].time : null
}

export async function waitField(store, key, value, label) {
  await waitUntil(() => store.get()[key] === value, label)
}

// logux/subscribe actions this client sent on the wire (after `from` frames).
export function sentSubscribes(client, from = 0) {
  return syncActions(client.frames.slice(from), 'out')
    .map(([action]) => action)
    .filter(action => action.type === 'logux/subscribe')
}

export { inFrames }
