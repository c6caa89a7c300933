// h. the `synced` replay happens exactly once: a second reconnect brings
// nothing new.
import { runOffline } from './offline-lib.mjs'
import { scenario } from './lib.mjs'

scenario('replay-once', url => runOffline(url, { again: true }))
