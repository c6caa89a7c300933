// Reference implementation of the interop TEST APP SPEC on @logux/server 0.14.0.
//
// Usage: node reference-server.mjs [PORT]      (or env PORT; default 31337)
// Prints `listening <port>` on stdout once the socket is bound; server logs go
// to stderr. Env:
//   LOGUX_ENV=development   send ['headers',{env:'development'}] and debug
//                           messages like the Python server's dev mode
//                           (default: production, scripts must not rely on it)
//   LOGUX_QUIET=1           no server log at all (for benchmarks)
//
// The same rules are implemented in Python by tests/interop/app.py.
import { LoguxNotFoundError } from '@logux/actions'
import { Server } from '@logux/server'

const port = Number(process.argv[2] || process.env.PORT || 31337)
const env = process.env.LOGUX_ENV || 'production'

const noop = () => {}
const logger = process.env.LOGUX_QUIET
  ? { debug: noop, error: noop, fatal: noop, info: noop, warn: noop }
  : { stream: process.stderr, type: 'human' }

const server = new Server({
  env,
  host: '127.0.0.1',
  logger,
  minSubprotocol: 2,
  port,
  subprotocol: 3
})

// The Python server answers a payload that fails the pydantic model with
// logux/undo reason `error` plus a details field. @logux/server has no
// payload models: the check is done by hand in `access` (which throws →
// undo `error`), and `undo` is wrapped so that the undo carries `details`.
const undoExtra = new Map()
const originalUndo = server.undo.bind(server)
server.undo = (action, meta, reason, extra = {}) => {
  let more = undoExtra.get(meta.id)
  undoExtra.delete(meta.id)
  return originalUndo(action, meta, reason, { ...more, ...extra })
}
function invalidPayload(meta, details) {
  undoExtra.set(meta.id, { details })
  return new Error('Invalid payload: ' + JSON.stringify(details))
}

// auth: token 'secret' for any user (userId 'server' is rejected by Logux)
server.auth(({ token }) => token === 'secret')

const names = {}
let counter = 0

server.channel('user/:id', {
  access(ctx) {
    return ctx.params.id === ctx.userId
  },
  load(ctx) {
    let id = ctx.params.id
    return { name: names[id] ?? 'anonymous', type: 'user/name', user: id }
  }
})

server.channel('chat/:id', {
  access(ctx) {
    return ctx.params.id !== 'secret'
  },
  load(ctx) {
    if (ctx.params.id === 'missing') throw new LoguxNotFoundError()
    if (ctx.params.id === 'broken') throw new Error('Broken chat')
    return undefined
  }
})

server.type('CHANGE_NAME', {
  access(ctx, action, meta) {
    if (typeof action.user !== 'string' || typeof action.name !== 'string') {
      throw invalidPayload(meta, [{ loc: ['user|name'], msg: 'string expected' }])
    }
    return action.user === ctx.userId
  },
  process(ctx, action) {
    names[action.user] = action.name
  },
  resend(ctx, action) {
    return { channel: 'user/' + action.user }
  }
})

server.type('chat/message', {
  access(ctx, action, meta) {
    let errors = []
    if (typeof action.chat !== 'string') {
      errors.push({ loc: ['chat'], msg: 'string expected' })
    }
    if (typeof action.text !== 'string') {
      errors.push({ loc: ['text'], msg: 'string expected' })
    } else if (action.text.length < 1 || action.text.length > 1000) {
      errors.push({ loc: ['text'], msg: 'length must be 1..1000' })
    }
    if (errors.length > 0) throw invalidPayload(meta, errors)
    return true
  },
  process(ctx, action) {
    if (action.text === 'fail') throw new Error('Processing failed')
  },
  resend(ctx, action) {
    return { channel: 'chat/' + action.chat }
  }
})

// chat/message without a process: the benchmarks' fan-out of an app that only relays
server.type('chat/note', {
  access(ctx, action, meta) {
    if (typeof action.chat !== 'string' || typeof action.text !== 'string') {
      throw invalidPayload(meta, [{ loc: ['chat|text'], msg: 'string expected' }])
    }
    return true
  },
  resend(ctx, action) {
    return { channel: 'chat/' + action.chat }
  }
})

server.type('notify', {
  access(ctx, action, meta) {
    if (typeof action.user !== 'string' || typeof action.text !== 'string') {
      throw invalidPayload(meta, [{ loc: ['user|text'], msg: 'string expected' }])
    }
    return true
  },
  resend(ctx, action) {
    return { user: action.user }
  }
})

// Keep user-addressed actions in the log, so the `synced` replay on reconnect
// can deliver them to clients that were offline (a MemoryStore without a
// reason drops an action right after `add`).
server.on('preadd', (action, meta) => {
  if (action.type === 'notify') meta.reasons.push('notify')
})

server.type('counter/inc', {
  access() {
    return true
  },
  async process(ctx) {
    counter += 1
    await ctx.sendBack({ type: 'counter/value', value: counter })
  }
})

server.type('denied/action', {
  access() {
    return false
  }
})

await server.listen()
process.stdout.write(`listening ${port}\n`)
