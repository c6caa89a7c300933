// SIGKILL of a node under load, with real Clients: N clients connect through
// the load balancer (argv[2]), all subscribe to one chat channel and send
// chat messages continuously (one every INTERVAL ms, M each). When half of
// them have been sent (sync() called), every client also sends a burst of
// BURST messages at once, so that each node has a backlog of actions in
// flight; once the nodes are working through it the script prints
//   {"phase":"half","servers":{label: server node id now},...}
// and keeps going: the test SIGKILLs a node then, for good. The clients
// reconnect by themselves (the Client's own Reconnect, 1–5 s backoff) through
// the balancer, resend what the server had not acknowledged, resubscribe with
// `since` and carry on. At the end each client waits until its own sync()
// promises settled and it has received every other client's resolved
// messages (one deadline for all), then the last line reports what the
// frames say (cluster-lib.mjs report()).
//
// Env: CLUSTER_CLIENTS (default 12), CLUSTER_MESSAGES (M, default 150),
// CLUSTER_INTERVAL_MS (default 20), CLUSTER_BURST (default 40),
// CLUSTER_FINAL_WAIT_MS (default 20000).
import {
  report,
  sendChat,
  startTracked,
  waitAllReceived,
  waitEach,
  wireStats
} from './cluster-lib.mjs'
import {
  delay,
  destroyAll,
  say,
  scenario,
  subscribe,
  synchronized,
  uniq,
  waitUntil
} from './lib.mjs'

const CLIENTS = Number(process.env.CLUSTER_CLIENTS || 12)
const M = Number(process.env.CLUSTER_MESSAGES || 150)
const INTERVAL_MS = Number(process.env.CLUSTER_INTERVAL_MS || 20)
const FINAL_WAIT_MS = Number(process.env.CLUSTER_FINAL_WAIT_MS || 20000)
const BURST = Number(process.env.CLUSTER_BURST || 40)
const SETTLE_MS = 1000

function currentServer(client) {
  let connections = wireStats(client).connections
  return connections.length ? connections[connections.length - 1].server : null
}

function settled(client) {
  return client.sent.every(m => m.resolved || m.undo || m.error)
}

scenario('cluster-kill', async url => {
  let chat = uniq('kill')
  let channel = `chat/${chat}`
  let clients = []
  for (let i = 0; i < CLIENTS; i++) {
    // the Client's default Reconnect backoff: 1 s doubling to 5 s
    clients.push(startTracked(url, `c${i}`, { maxDelay: 5000, minDelay: 1000 }))
  }
  await Promise.all(clients.map(c => synchronized(c, c.label)))
  let subscribed = {}
  await Promise.all(
    clients.map(async c => {
      subscribed[c.label] = (
        await subscribe(c, channel, `${c.label} subscribe`)
      ).ok
    })
  )
  let startServers = {}
  for (let c of clients) startServers[c.label] = currentServer(c)

  let total = 0
  let half = null
  let started = Date.now()
  // At half-time: a burst of BURST messages from every client, so that each
  // node has a backlog of actions in flight (received, being appended or
  // processed) when it dies; `half` is printed once the nodes are working
  // through it (the first burst message of every client acknowledged).
  async function halfTime() {
    half = { at: null, burstAt: Date.now() - started, servers: {} }
    let firsts = []
    for (let c of clients) {
      for (let b = 0; b < BURST; b++) {
        sendChat(c, chat, `${c.label}#b${b}`)
        if (b === 0) firsts.push(c.sent[c.sent.length - 1])
      }
    }
    try {
      await waitUntil(
        () => firsts.every(m => m.ackedAt || m.resolved),
        'the burst is being processed',
        2000
      )
    } catch {}
    half.at = Date.now() - started
    for (let c of clients) half.servers[c.label] = currentServer(c)
    say({ channel, phase: 'half', servers: half.servers })
  }
  await Promise.all(
    clients.map(async (c, n) => {
      await delay((n * INTERVAL_MS) / CLIENTS)
      for (let i = 0; i < M; i++) {
        sendChat(c, chat, `${c.label}#${i}`)
        total += 1
        if (half === null && total >= (CLIENTS * M) / 2) halfTime()
        await delay(INTERVAL_MS)
      }
    })
  )
  while (!half || half.at === null) await delay(10)
  let sendingMs = Date.now() - started

  let timedOut = []
  let deadline = Date.now() + FINAL_WAIT_MS
  await waitEach(clients, settled, 'every own sync() settled', timedOut, deadline)
  await waitAllReceived(clients, timedOut, deadline)
  // anything sent twice would arrive right behind the first copy
  await delay(SETTLE_MS)
  let result = {
    channel,
    clients: clients.map(report),
    half,
    interval: INTERVAL_MS,
    messagesPerClient: M,
    sendingMs,
    startServers,
    subscribed,
    timedOut,
    totalMs: Date.now() - started
  }
  destroyAll(clients)
  return result
})
