// Cross-node fan-out with real Clients: clients connected DIRECTLY to
// different nodes (argv[2]: comma-separated node URLs), all subscribed to one
// chat channel, each sends K messages with client.sync(). Reports, per
// client, how many times each chat/message came in on the wire.
//
// Env: CLUSTER_PER_NODE (clients per node, default 2), CLUSTER_MESSAGES (K,
// default 20).
import {
  report,
  sendChat,
  startTracked,
  waitAllReceived
} from './cluster-lib.mjs'
import {
  delay,
  destroyAll,
  scenario,
  subscribe,
  synchronized,
  uniq,
  withTimeout
} from './lib.mjs'

const PER_NODE = Number(process.env.CLUSTER_PER_NODE || 2)
const K = Number(process.env.CLUSTER_MESSAGES || 20)
const SETTLE_MS = 1000

scenario('cluster-fanout', async arg => {
  let urls = arg.split(',')
  let chat = uniq('fan')
  let channel = `chat/${chat}`
  let clients = []
  urls.forEach((url, n) => {
    for (let j = 0; j < PER_NODE; j++) {
      clients.push(startTracked(url, `n${n}c${j}`))
    }
  })
  await Promise.all(clients.map(c => synchronized(c, c.label)))
  let subscribed = {}
  for (let c of clients) {
    subscribed[c.label] = (
      await subscribe(c, channel, `${c.label} subscribe`)
    ).ok
  }
  // every client sends its K messages at once, all clients concurrently
  let sends = []
  for (let i = 0; i < K; i++) {
    for (let c of clients) sends.push(sendChat(c, chat, `${c.label}#${i}`))
  }
  let allSettled = Promise.allSettled(sends)
  let timedOut = []
  try {
    await withTimeout(allSettled, 'every sync() settled')
  } catch (e) {
    timedOut.push(String(e.message))
  }
  await waitAllReceived(clients, timedOut)
  // anything sent twice would arrive right behind the first copy
  await delay(SETTLE_MS)
  let result = {
    channel,
    clients: clients.map(report),
    messagesPerClient: K,
    subscribed,
    timedOut
  }
  destroyAll(clients)
  return result
})
