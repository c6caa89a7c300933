// Helpers of the cluster scenarios (cluster-fanout.mjs, cluster-kill.mjs):
// real @logux/client Clients against several logsync nodes, with every
// observation taken from the raw WebSocket frames that lib.mjs records
// (the client's log drops a repeated action id silently, the wire does not).
import { createClient, uniq, waitUntil, WAIT_MS } from './lib.mjs'

export const CHAT_TYPE = 'chat/message'

// A started Client (not awaited) that also records:
// - `sent`: one entry per own chat message {text, id, resolved, undo, error};
// - `disconnects`: a snapshot per lost connection of the messages whose
//   sync() was still pending, and whether the server had acknowledged them
//   with `synced` on that connection.
export function startTracked(url, name, opts = {}) {
  let client = createClient(url, `${name}${uniq('u').replace(/-/g, '')}`, opts)
  client.label = name
  client.sent = []
  client.disconnects = []
  let wasConnected = false
  client.on('state', () => {
    let state = client.state
    if (state === 'synchronized' || state === 'sending') wasConnected = true
    if (state === 'disconnected' && wasConnected) {
      wasConnected = false
      let stats = wireStats(client)
      let pending = client.sent.filter(m => !m.resolved && !m.undo && !m.error)
      client.disconnects.push({
        at: Date.now(),
        connection: stats.connections.length - 1,
        pending: pending.map(m => ({
          acked: stats.ownAcked.has(m.text),
          text: m.text,
          wireSent: stats.ownSentOn.has(m.text)
        }))
      })
    }
  })
  // When each own message was acknowledged (`synced`) on the wire: its
  // outgoing `sync` carries the client-side `added` that `synced` answers.
  let byText = new Map()
  let scanned = 0
  let unacked = new Map() // added → entries
  client.trackSent = entry => byText.set(entry.text, entry)
  client.node.connection.on('message', msg => {
    if (!Array.isArray(msg) || msg[0] !== 'synced') return
    for (; scanned < client.frames.length; scanned++) {
      let [dir, out] = client.frames[scanned]
      if (dir !== 'out' || out[0] !== 'sync') continue
      for (let i = 2; i < out.length; i += 2) {
        let entry = out[i].type === CHAT_TYPE && byText.get(out[i].text)
        if (!entry) continue
        if (!unacked.has(out[1])) unacked.set(out[1], [])
        unacked.get(out[1]).push(entry)
      }
    }
    for (let [added, entries] of unacked) {
      if (added > msg[1]) continue
      unacked.delete(added)
      for (let entry of entries) entry.ackedAt ??= Date.now()
    }
  })
  client.start()
  return client
}

// client.sync() of one chat message, recorded in client.sent.
export function sendChat(client, chat, text) {
  let entry = {
    ackedAt: null,
    error: null,
    id: null,
    resolved: false,
    resolvedAt: null,
    sentAt: Date.now(),
    text,
    undo: null
  }
  client.sent.push(entry)
  client.trackSent(entry)
  let meta = {}
  let promise = client.sync({ chat, text, type: CHAT_TYPE }, meta)
  entry.id = meta.id
  promise.then(
    () => {
      entry.resolved = true
      entry.resolvedAt = Date.now()
    },
    e => {
      if (e.name === 'LoguxUndoError') entry.undo = e.action
      else entry.error = String(e && e.stack ? e.stack : e)
    }
  )
  return promise
}

// What the frames say, per client:
// - connections: [{server, index}] in order (one per `connected` frame);
// - chatCounts: text → how many times a chat/message with that text came in
//   `sync` frames (any connection, any sender: own texts too, which must be 0);
// - chatIds: text → the distinct wire ids seen for it (decompressed);
// - undos: every logux/undo that came in;
// - ownSentOn: own text → connection indexes its `sync` went out on;
// - ownAcked: own texts whose outgoing `sync` was answered with `synced`
//   on the same connection.
export function wireStats(client) {
  let connections = []
  let chatCounts = new Map()
  let chatIds = new Map()
  let undos = []
  let processed = new Map()
  let ownSentOn = new Map()
  let ownAcked = new Set()
  let outByAdded = new Map() // per connection: client-side `added` → texts
  let baseTime = 0
  let serverId = null
  for (let [dir, msg] of client.frames) {
    if (!Array.isArray(msg)) continue
    let kind = msg[0]
    if (dir === 'in' && kind === 'connected') {
      serverId = msg[2]
      baseTime = Array.isArray(msg[3]) ? msg[3][1] : 0
      connections.push({ index: connections.length, server: serverId })
      outByAdded = new Map()
    } else if (dir === 'out' && kind === 'sync') {
      let conn = connections.length - 1
      for (let i = 2; i < msg.length; i += 2) {
        let action = msg[i]
        if (action && action.type === CHAT_TYPE) {
          if (!ownSentOn.has(action.text)) ownSentOn.set(action.text, [])
          ownSentOn.get(action.text).push(conn)
          if (!outByAdded.has(msg[1])) outByAdded.set(msg[1], [])
          outByAdded.get(msg[1]).push(action.text)
        }
      }
    } else if (dir === 'in' && kind === 'synced') {
      for (let [added, texts] of outByAdded) {
        if (added <= msg[1]) {
          for (let text of texts) ownAcked.add(text)
          outByAdded.delete(added)
        }
      }
    } else if (dir === 'in' && kind === 'sync') {
      for (let i = 2; i < msg.length; i += 2) {
        let action = msg[i]
        let id = wireId(msg[i + 1].id, baseTime, serverId)
        if (action.type === CHAT_TYPE) {
          chatCounts.set(action.text, (chatCounts.get(action.text) || 0) + 1)
          if (!chatIds.has(action.text)) chatIds.set(action.text, new Set())
          chatIds.get(action.text).add(id)
        } else if (action.type === 'logux/undo') {
          undos.push(action)
        } else if (action.type === 'logux/processed') {
          processed.set(action.id, (processed.get(action.id) || 0) + 1)
        }
      }
    }
  }
  return {
    chatCounts,
    chatIds,
    connections,
    ownAcked,
    ownSentOn,
    processed,
    undos
  }
}

// The full id of a meta.id as compressed on the wire (protocol v5).
function wireId(id, baseTime, serverId) {
  if (typeof id === 'number') return `${id + baseTime} ${serverId} 0`
  if (id.length === 2) return `${id[0] + baseTime} ${serverId} ${id[1]}`
  return `${id[0] + baseTime} ${id[1]} ${id[2]}`
}

// Texts that `client` must have received exactly once: every other
// client's messages whose sync() resolved.
export function expectedFrom(client, all) {
  let texts = []
  for (let other of all) {
    if (other === client) continue
    for (let m of other.sent) if (m.resolved) texts.push(m.text)
  }
  return texts
}

// Whether `client` has every text of `expected` in its incoming frames.
export function hasAll(client, expected) {
  let counts = wireStats(client).chatCounts
  return expected.every(text => counts.has(text))
}

// Wait until `check(client)` holds for each client in turn, each for
// WAIT_MS, or all by `deadline` (a Date.now() value); the message of each wait
// that timed out goes to `timedOut`.
export async function waitEach(clients, check, what, timedOut, deadline) {
  for (let c of clients) {
    let ms = deadline === undefined ? WAIT_MS : Math.max(0, deadline - Date.now())
    try {
      await waitUntil(() => check(c), `${c.label}: ${what}`, ms)
    } catch (e) {
      timedOut.push(String(e.message))
    }
  }
}

// Wait until each client has received every other client's resolved
// messages (see waitEach).
export function waitAllReceived(clients, timedOut, deadline) {
  return waitEach(
    clients,
    c => hasAll(c, expectedFrom(c, clients)),
    "every other client's messages received",
    timedOut,
    deadline
  )
}

// One client's observations as plain JSON.
export function report(client) {
  let stats = wireStats(client)
  let ownTexts = new Set(client.sent.map(m => m.text))
  let received = {}
  let ownReceived = {}
  for (let [text, count] of stats.chatCounts) {
    if (ownTexts.has(text)) ownReceived[text] = count
    else received[text] = count
  }
  let idsPerText = {}
  for (let [text, ids] of stats.chatIds) {
    if (ids.size !== 1) idsPerText[text] = [...ids]
  }
  let ownSentTwice = {}
  for (let [text, conns] of stats.ownSentOn) {
    if (conns.length > 1) ownSentTwice[text] = conns
  }
  return {
    clientId: client.clientId,
    connections: stats.connections.map(c => c.server),
    disconnects: client.disconnects.slice(),
    errors: client.errors,
    // a text that came with more than one id (never expected)
    idsPerText,
    name: client.label,
    ownReceived,
    // own texts whose `sync` went out on more than one connection (resends)
    ownSentTwice,
    received,
    sent: client.sent.map(m => ({
      ackedAt: m.ackedAt,
      error: m.error,
      id: m.id,
      resolved: m.resolved,
      resolvedAt: m.resolvedAt,
      sentAt: m.sentAt,
      text: m.text,
      undo: m.undo
    })),
    state: client.state,
    undos: stats.undos
  }
}
