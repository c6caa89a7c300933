// i. the same counter/inc (same meta.id) sent twice: once normally, once
// after a reconnect as a raw `sync` message. Then a fresh counter/inc is
// sent as a barrier (per-client queues are FIFO, so the duplicate has been
// handled by the time the barrier's logux/processed arrives).
import {
  connectNode,
  createNode,
  delay,
  goOffline,
  inFrames,
  scenario,
  SETTLE_MS,
  syncActions,
  uniq,
  waitUntil
} from './lib.mjs'

function processedFor(node, id) {
  return received(node).filter(
    a => (a.type === 'logux/processed' || a.type === 'logux/undo') && a.id === id
  )
}

function received(node) {
  return syncActions(node.frames).map(([action]) => action)
}

scenario('duplicate-id', async url => {
  let node = createNode(url, uniq('alice'))
  await connectNode(node)

  let action = { type: 'counter/inc' }
  let meta = await node.log.add(action, { reasons: ['test'] })
  let id = meta.id
  await waitUntil(() => processedFor(node, id).length >= 1, 'first processed')

  await goOffline(node, 'node')
  let reconnectFrom = node.frames.length
  await connectNode(node, 'synchronized again')

  // resend the very same action, compressed against the new baseTime
  let syncedBefore = inFrames(node.frames).filter(m => m[0] === 'synced').length
  node.sendSync(node.lastAddedCache, [[action, { id, time: meta.time }]])
  await waitUntil(
    () => inFrames(node.frames).filter(m => m[0] === 'synced').length > syncedBefore,
    'synced for the duplicate'
  )

  let barrier = await node.log.add({ type: 'counter/inc' }, { reasons: ['test'] })
  await waitUntil(
    () => processedFor(node, barrier.id).length >= 1,
    'barrier processed'
  )
  await delay(SETTLE_MS)

  let answers = processedFor(node, id)
  let report = {
    barrierAnswers: processedFor(node, barrier.id).map(a => a.type),
    counterValues: received(node)
      .filter(a => a.type === 'counter/value')
      .map(a => a.value),
    duplicateAnswers: answers.map(a => a.type),
    errors: node.errors,
    id,
    processedCount: answers.filter(a => a.type === 'logux/processed').length,
    resentFrame: node.frames
      .slice(reconnectFrom)
      .find(([d, m]) => d === 'out' && m[0] === 'sync')[1],
    undoCount: answers.filter(a => a.type === 'logux/undo').length
  }
  node.destroy()
  return report
})
