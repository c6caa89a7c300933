// g. offline delivery of user-addressed actions by the `synced` replay.
import { runOffline } from './offline-lib.mjs'
import { scenario } from './lib.mjs'

scenario('offline', url => runOffline(url, { again: false }))
