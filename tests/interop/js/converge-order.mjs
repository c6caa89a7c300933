// isFirstOlder of @logux/core on the [[time, id], [time, id]] pairs of argv[2]
// (JSON): {"older": [isFirstOlder(first, second), ...]}. The Python client's
// CRDT helpers (clients/python/logsync_client/crdt.py) must order stamps the
// same way.
import { isFirstOlder } from '@logux/core'

let pairs = JSON.parse(process.argv[2])
let older = pairs.map(([[t1, id1], [t2, id2]]) =>
  isFirstOlder({ id: id1, time: t1 }, { id: id2, time: t2 })
)
process.stdout.write(JSON.stringify({ older }) + '\n')
