// Shared body of the offline-delivery (g) and replay-once (h) scenarios.
//
// B is a @logux/client Client that stays the same object (same MemoryStore,
// so the same `synced` position) across disconnect()/connect(). A first sends
// one `notify` to B while B is online (advances B's synced position), then 5
// while B is offline. Users are unique per run, because kept `notify`
// actions stay in the server log and would be replayed to a fresh client of a
// reused user name.
import {
  delay,
  destroyAll,
  goOffline,
  goOnline,
  inFrames,
  receivedOf,
  SETTLE_MS,
  startClients,
  textsOf,
  trySync,
  waitUntil
} from './lib.mjs'

function texts(client) {
  return textsOf(client, 'notify')
}

async function reconnect(client, expectedCount, label) {
  let frameStart = client.frames.length
  let before = client.received.length
  await goOnline(client, `${label}: B`)
  await waitUntil(
    () => receivedOf(client, 'notify').length >= expectedCount,
    `${label}: B receives ${expectedCount} notify in total`
  )
  await delay(SETTLE_MS)
  let frames = client.frames.slice(frameStart)
  let connect = frames.find(([d, m]) => d === 'out' && m[0] === 'connect')
  return {
    connectSynced: connect ? connect[1][3] : null,
    inFrames: inFrames(frames).filter(m => m[0] !== 'ping' && m[0] !== 'pong'),
    received: client.received.slice(before).map(i => i.action)
  }
}

export async function runOffline(url, { again }) {
  let [alice, bob] = await startClients(url, ['alice', 'bob'])
  let bobId = bob.options.userId
  let firstSynced = bob.node.lastReceived

  // online delivery, moves B's synced position
  let pre = await trySync(alice, { text: 'pre', type: 'notify', user: bobId })
  await waitUntil(() => texts(bob).includes('pre'), 'B receives "pre" live')
  let live = texts(bob)
  let syncedBeforeOffline = bob.node.lastReceived

  await goOffline(bob, 'B')
  let sent = []
  for (let i = 1; i <= 5; i++) {
    let r = await trySync(alice, { text: `n${i}`, type: 'notify', user: bobId })
    sent.push(r.ok)
  }

  let first = await reconnect(bob, live.length + 5, 'reconnect 1')
  let result = {
    firstReconnect: {
      connectSynced: first.connectSynced,
      inFrames: first.inFrames,
      notify: first.received.filter(a => a.type === 'notify').map(a => a.text),
      receivedTypes: first.received.map(a => a.type)
    },
    live,
    preOk: pre.ok,
    sentOk: sent,
    syncedAfterConnect: firstSynced,
    syncedBeforeOffline
  }

  if (again) {
    let expected = receivedOf(bob, 'notify').length
    await goOffline(bob, 'B')
    let second = await reconnect(bob, expected, 'reconnect 2')
    result.secondReconnect = {
      connectSynced: second.connectSynced,
      inFrames: second.inFrames,
      notify: second.received.filter(a => a.type === 'notify').map(a => a.text),
      receivedTypes: second.received.map(a => a.type)
    }
  }
  result.allNotify = texts(bob)
  destroyAll([alice, bob])
  return result
}
