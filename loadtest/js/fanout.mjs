// One process of the Node fan-out load generator of `python -m loadtest.bench --generator node`.
//
//   node loadtest/js/fanout.mjs '<spec JSON>'
//
// It speaks Logux v5 at the protocol level on raw `ws` sockets, message for message as the
// Python generator (`loadtest/client.py`, `loadtest.bench._fanout`) does: `connect` →
// `connected` (its baseTime), own ids compressed against it, a `sync` with `logux/subscribe`
// per subscriber, every received `sync` answered with `synced`, `ping` with `pong`. Publishers
// send one `chat/message` or `chat/note` per `sync`, its text `<publisher>:<seq>:<µs since the
// epoch>`; saturating (`rate` 0) each keeps at most `window` actions that not every subscriber
// of this process has received; at a fixed `rate` (actions/s over all processes) the text
// carries the scheduled send time (open loop).
//
// The spec: { url, token, subprotocol, kind, channels, window, rate, duration, publishersTotal,
// connectInFlight, drainMs, subscribers: [[j, channel], …], publishers: [i, …] }.
//
// The runner and this process take turns, one JSON line each (stdin → stdout):
//   (start)          → {"ready": true}            every socket open and subscribed
//   {"start": t}     → {"published": {…}}         published from t (s since the epoch) for
//                                                 `duration` s; every action answered `synced`
//   {"expected": n}  → {"result": {…}}            n deliveries arrived here (or drainMs passed)
//   {"close": true}  → the sockets close, the process exits 0
// An error is one line {"error": "…"} and exit 1.
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'

// `ws` is the interop tests' copy (tests/interop/js/node_modules): no package of our own here.
const require = createRequire(new URL('../../tests/interop/js/package.json', import.meta.url))
const WebSocket = require('ws')

const spec = JSON.parse(process.argv[2])
const saturate = !(spec.rate > 0)
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000)

function say(data) {
  return new Promise(resolve => process.stdout.write(JSON.stringify(data) + '\n', resolve))
}

function fail(error) {
  process.stdout.write(JSON.stringify({ error: String(error?.stack || error) }) + '\n', () =>
    process.exit(1)
  )
}

// -- one connection -------------------------------------------------------------------------

class Client {
  // Open, `connect`, resolve on `connected`; then every message goes to `handle`.
  static open(url, nodeId) {
    return new Promise((resolve, reject) => {
      let client = new Client(nodeId)
      let ws = new WebSocket(url, { perMessageDeflate: false })
      client.ws = ws
      let timer = setTimeout(() => reject(new Error(`${nodeId}: no connected in 60 s`)), 60000)
      ws.on('open', () => {
        client.send(['connect', 5, nodeId, 0, { subprotocol: spec.subprotocol, token: spec.token }])
      })
      ws.on('message', data => {
        let msg = JSON.parse(data)
        if (client.baseTime === null) {
          if (msg[0] === 'connected') {
            client.serverId = msg[2]
            client.baseTime = msg[3][1]
            clearTimeout(timer)
            resolve(client)
          } else if (msg[0] === 'error') {
            reject(new Error(`${nodeId}: ${JSON.stringify(msg)}`))
          }
          return
        }
        framesIn += 1
        client.handle(msg)
      })
      ws.on('error', reject)
      ws.on('close', (code, reason) => {
        client.closed = `${code} ${reason}`
        clearTimeout(timer)
        reject(new Error(`${nodeId}: closed in handshake: ${client.closed}`))
      })
    })
  }

  constructor(nodeId) {
    this.nodeId = nodeId
    this.baseTime = null
    this.serverId = ''
    this.seq = 0
    this.watermark = 0
    this.closed = null
    this.onAction = null // (action, meta) of each received `sync`
    this.onSynced = null // (added) of each received `synced`
  }

  send(message) {
    framesOut += 1
    this.ws.send(JSON.stringify(message))
  }

  // A `sync` numbered `added` with one action and a fresh id; returns the full id.
  sync(added, action) {
    let now = Date.now()
    let seq = this.seq++
    let ms = now - this.baseTime
    this.send(['sync', added, action, { id: seq === 0 ? ms : [ms, seq], time: ms }])
    return `${now} ${this.nodeId} ${seq}`
  }

  handle(msg) {
    let kind = msg[0]
    if (kind === 'sync') {
      let added = msg[1]
      if (added > this.watermark) this.watermark = added
      if (this.onAction) {
        for (let i = 2; i < msg.length; i += 2) this.onAction(msg[i], msg[i + 1])
      }
      this.send(['synced', added])
    } else if (kind === 'synced') {
      if (this.onSynced) this.onSynced(msg[1])
    } else if (kind === 'ping') {
      this.send(['pong', this.watermark])
    } else if (kind === 'error') {
      problems.push(`${this.nodeId}: ${JSON.stringify(msg)}`)
    }
  }
}

// -- what this process measures -------------------------------------------------------------

const clients = []
const problems = []
const local = new Map() // channel → subscribers in this process
for (let [, channel] of spec.subscribers) local.set(channel, (local.get(channel) || 0) + 1)
const latencies = [] // µs, one per delivery
let deliveries = 0
let duplicates = 0
let lastDelivery = 0
let expected = null
let delivered = null // resolves once `expected` deliveries arrived
const pending = new Map() // saturating: `${p}:${seq}` → local subscribers still to receive it
const publishers = new Map() // i → { client, inFlight: Map(added → channel), window, … }
const accepted = {} // channel → actions answered `synced`
let lastAccept = 0
let framesIn = 0 // after `connected`
let framesOut = 0

function onDelivery(last, action) {
  if (action.type !== spec.kind) return
  let now = nowUs()
  let [p, s, t] = action.text.split(':').map(Number)
  latencies.push(now - t)
  deliveries += 1
  lastDelivery = now / 1e6
  if (s <= (last.get(p) ?? -1)) duplicates += 1
  last.set(p, s)
  if (saturate) {
    let key = `${p}:${s}`
    let left = pending.get(key)
    if (left !== undefined) {
      if (left <= 1) {
        pending.delete(key)
        publishers.get(p)?.release()
      } else {
        pending.set(key, left - 1)
      }
    }
  }
  if (expected !== null && deliveries >= expected) delivered?.()
}

async function subscriber(j, channel) {
  let client = await Client.open(spec.url, `f${j}:1`)
  clients.push(client)
  let last = new Map() // publisher → newest seq seen
  let answered
  let answer = new Promise(resolve => (answered = resolve))
  let id = client.sync(1, { channel: `chat/b${channel}`, type: 'logux/subscribe' })
  client.onAction = action => {
    if (action.type === 'logux/processed' || action.type === 'logux/undo') {
      if (action.id === id) answered(action)
      return
    }
    onDelivery(last, action)
  }
  let result = await Promise.race([answer, sleep(60000).then(() => ({ type: 'timeout' }))])
  if (result.type !== 'logux/processed') {
    throw new Error(`subscribe f${j} to chat/b${channel}: ${JSON.stringify(result)}`)
  }
}

async function publisher(i) {
  let client = await Client.open(spec.url, `p${i}:1`)
  clients.push(client)
  let pub = {
    client,
    inFlight: new Map(),
    free: spec.window,
    wake: null, // resolves a publisher waiting for a free slot
    drained: null, // resolves once inFlight is empty
    release() {
      this.free += 1
      if (this.wake) this.wake()
    }
  }
  client.onAction = action => {
    if (action.type === 'logux/undo') problems.push(`undo ${action.reason}: ${action.id}`)
  }
  client.onSynced = added => {
    let channel = pub.inFlight.get(added)
    if (channel === undefined) return
    pub.inFlight.delete(added)
    accepted[channel] = (accepted[channel] || 0) + 1
    lastAccept = Date.now() / 1000
    if (saturate && !local.get(channel)) pub.release() // nobody here to wait for
    if (pub.inFlight.size === 0 && pub.drained) pub.drained()
  }
  publishers.set(i, pub)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function bounded(limit, jobs) {
  let next = 0
  async function lane() {
    while (next < jobs.length) await jobs[next++]()
  }
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, lane))
}

// -- the run --------------------------------------------------------------------------------

async function publish(i, pub, start, stop) {
  let interval = saturate ? 0 : (spec.publishersTotal / spec.rate) * 1000 // ms
  let first = start * 1000 + (interval * i) / spec.publishersTotal
  let seq = 0
  await sleep(first - Date.now())
  while (true) {
    let sentAt // ms since the epoch
    if (interval) {
      sentAt = first + seq * interval
      if (sentAt >= stop * 1000) return
      let delay = sentAt - Date.now()
      if (delay > 0) await sleep(delay)
    } else {
      while (pub.free <= 0 && !stopping) {
        await new Promise(resolve => (pub.wake = resolve))
        pub.wake = null
      }
      sentAt = Date.now()
      if (sentAt >= stop * 1000 || stopping) return
      pub.free -= 1
    }
    let channel = (i + seq) % spec.channels
    if (saturate && local.get(channel)) pending.set(`${i}:${seq}`, local.get(channel))
    pub.inFlight.set(seq + 1, channel)
    let text = `${i}:${seq}:${Math.round(sentAt * 1000)}`
    pub.client.sync(seq + 1, { chat: `b${channel}`, text, type: spec.kind })
    seq += 1
    if (interval === 0 && seq % 64 === 0) await new Promise(setImmediate) // let replies in
  }
}

let stopping = false

async function run(start) {
  let stop = start + spec.duration
  // a saturating publisher may be waiting for a free slot when time is up: wake it
  setTimeout(() => {
    stopping = true
    for (let pub of publishers.values()) pub.wake?.()
  }, stop * 1000 - Date.now())
  await Promise.all([...publishers].map(([i, pub]) => publish(i, pub, start, stop)))
  let drains = [...publishers.values()].map(pub =>
    pub.inFlight.size === 0 ? null : new Promise(resolve => (pub.drained = resolve))
  )
  await Promise.race([Promise.all(drains), sleep(spec.drainMs)])
  let unacknowledged = 0
  for (let pub of publishers.values()) unacknowledged += pub.inFlight.size
  if (unacknowledged) problems.push(`${unacknowledged} actions not answered with synced in time`)
  return { accepted, lastAccept, unacknowledged }
}

async function drain(n) {
  expected = n
  if (deliveries < n) {
    await Promise.race([new Promise(resolve => (delivered = resolve)), sleep(spec.drainMs)])
  }
  let closed = clients.filter(c => c.closed).map(c => `${c.nodeId}: ${c.closed}`)
  return {
    closed: closed.slice(0, 10),
    closedCount: closed.length,
    deliveries,
    duplicates,
    expected: n,
    framesIn,
    framesOut,
    lastDelivery,
    latenciesUs: latencies,
    problems: problems.slice(0, 10)
  }
}

async function main() {
  let lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  let next = async () => {
    let { done, value } = await lines.next()
    if (done) process.exit(0) // the runner went away
    return JSON.parse(value)
  }
  await bounded(
    spec.connectInFlight,
    spec.subscribers.map(([j, channel]) => () => subscriber(j, channel))
  )
  await bounded(
    spec.connectInFlight,
    spec.publishers.map(i => () => publisher(i))
  )
  await say({ ready: true })
  let { start } = await next()
  await say({ published: await run(start) })
  let { expected: n } = await next()
  await say({ result: await drain(n) })
  await next()
  for (let client of clients) client.ws.terminate()
  process.exit(0)
}

main().catch(fail)
