/**
 * SocketClient: the Logux WebSocket transport (protocol v5, as @logux/core 0.10 speaks it) with
 * the API of the pull client (pull.js): a saved queue of pending actions, subscriptions with
 * resume points, and `action`/`processed`/`undo`/`error`/`state` events.
 *
 *   const client = new SocketClient({ url: "wss://sync.example", node: "10:phone", token });
 *   client.on("action", (action, meta) => { ... });
 *   client.on("state", ({ state, pending }) => { ... });
 *   client.start();                       // connect, and reconnect until stop()
 *   await client.subscribe("rooms/1");
 *   await client.push({ type: "rooms/add", text: "hi" });   // saved, then sent
 *   await client.sync();                  // resolves once the server has answered the queue
 *
 * What the client keeps in its storage adapter (storage.js): `<keyPrefix>queue` (the actions
 * not yet answered by `logux/processed` or `logux/undo`; the same format as the pull client's,
 * so a page can switch transports and keep its queue) and `<keyPrefix>socket`: the `added` of
 * the last server `sync` handled (sent as `synced` in `connect`) and the subscriptions, each with
 * its resume point (`since`: the `logux/processed` answering its last subscribe).
 */

import { backoffDelay, SyncError } from "./pull.js";
import { MemoryStorage } from "./storage.js";

/** The Logux protocol version spoken. */
export const PROTOCOL = 5;

/** Errors after which reconnecting cannot help (the client stops, as @logux/core's Reconnect). */
const FATAL = new Set(["wrong-protocol", "wrong-subprotocol", "wrong-credentials"]);

/**
 * Close code "Try Again Later": the server is busy; reconnect after the wait its close reason
 * gives (logsync: "try again later (try again in 3 s)", a Retry-After in words), else after at
 * least `busyDelay`.
 */
const TRY_AGAIN_LATER = 1013;
const RETRY_HINT = /try again in (\d+(?:\.\d+)?) ?s\b/;

/** Received ids kept to drop a replayed action seen already (a bounded window). */
const SEEN_WINDOW = 2000;

const NODE_ID = /^[^\s:]+:[^\s:]+(:[^\s]+)?$/;

/** Socket readyState OPEN (the constructor's static may be absent on injected classes). */
const OPEN = 1;

/**
 * A Logux WebSocket client. Construct it, add listeners with {@link SocketClient#on}, then
 * {@link SocketClient#start}; queue actions with {@link SocketClient#push}, choose channels
 * with {@link SocketClient#subscribe}, {@link SocketClient#stop} to disconnect for good.
 */
export class SocketClient {
  /**
   * @param {object} options
   * @param {string} options.url the server's `ws(s)://host:port/` (`http(s)://` is turned into it)
   * @param {string} options.node the node id, `user:client[:tab]` (`false:client` for no user)
   * @param {string | (() => string | Promise<string>)} options.token sent in `connect`
   * @param {import("./storage.js").Storage} [options.storage] default: a MemoryStorage
   * @param {number} [options.subprotocol] the app's subprotocol, as in `connect`
   * @param {any} [options.WebSocket] the WebSocket class (default globalThis.WebSocket; Node 20
   *   has none: pass the `ws` package's)
   * @param {{ base?: number, cap?: number }} [options.backoff] reconnect delays, ms, full jitter
   *   (default { base: 1000, cap: 30000 })
   * @param {number} [options.busyDelay] least ms before reconnecting after close code 1013
   *   (default 5000)
   * @param {number} [options.ping] idle ms before a `ping` (default 10000)
   * @param {number} [options.timeout] ms to wait for `connected`, `synced` or `pong` (default 20000)
   * @param {number} [options.syncBatch] pending actions per `sync` message (default 100)
   * @param {number} [options.maxMessageBytes] about the most bytes of one `sync` message (the
   *   server's `max_frame_bytes`, default 1 MiB); `push` refuses an action too large for one
   * @param {boolean} [options.fixTime] correct times by the handshake's time fix (default true)
   * @param {string} [options.keyPrefix] storage key prefix (default `logsync:<node>:`)
   * @param {() => number} [options.random] for the jitter (default Math.random)
   */
  constructor({
    url,
    node,
    token,
    storage = new MemoryStorage(),
    subprotocol,
    WebSocket = globalThis.WebSocket,
    backoff = {},
    busyDelay = 5000,
    ping = 10_000,
    timeout = 20_000,
    syncBatch = 100,
    maxMessageBytes = 1 << 20,
    fixTime = true,
    keyPrefix,
    random = Math.random,
  }) {
    if (typeof url !== "string" || url === "") throw new TypeError("url is required");
    if (typeof node !== "string" || !NODE_ID.test(node)) {
      throw new TypeError(`node must be "user:client[:tab]", not ${JSON.stringify(node)}`);
    }
    if (typeof WebSocket !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (Node < 22: the `ws` package's)");
    }
    if (!(Number.isInteger(syncBatch) && syncBatch > 0)) throw new RangeError("syncBatch > 0");
    this.url = url.replace(/^http(s?):/, "ws$1:");
    this.node = node;
    this.token = token;
    this.storage = storage;
    this.subprotocol = subprotocol;
    this.WebSocket = WebSocket;
    this.backoff = { base: backoff.base ?? 1000, cap: backoff.cap ?? 30_000 };
    this.busyDelay = busyDelay;
    this.pingMs = ping;
    this.timeout = timeout;
    this.syncBatch = syncBatch;
    this.maxMessageBytes = maxMessageBytes;
    this.fixTime = fixTime;
    this.keyPrefix = keyPrefix ?? `logsync:${node}:`;
    this.random = random;
    /** @type {"disconnected" | "connecting" | "sending" | "synchronized"} */
    this.state = "disconnected";
    /** The server's node id and `headers`, once connected. */
    this.remoteNode = undefined;
    this.remoteHeaders = {};
    /** ms added to the server's times to get this clock's (the handshake's time fix). */
    this.timeFix = 0;
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Promise<void> | undefined} */
    this._loading = undefined;
    /** @type {Promise<void>} one storage write at a time, in call order */
    this._writing = Promise.resolve();
    /** @type {{ actions: [object, { id: string, time: number }][], ms: number, seq: number }} */
    this._queue = { actions: [], ms: 0, seq: -1 };
    /** @type {{ synced: number, channels: Record<string, { extra: object, since?: { id: string, time: number } }> }} */
    this._saved = { synced: 0, channels: {} };
    this._running = false;
    this._attempt = 0;
    /** The `added` of this client's last `sync` message (what `ping`/`pong` carry). */
    this._added = 0;
    /** @type {any} the current socket */
    this._socket = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._reconnectTimer = undefined;
    this._connection = undefined;
    /** @type {string[]} */
    this._seen = [];
    this._seenSet = new Set();
    /** @type {Map<string, { resolve: Function, reject: Function }[]>} */
    this._tracked = new Map();
    /** @type {Map<string, any>} answers of the last queued actions, for a late track() */
    this._recent = new Map();
    /** @type {Set<Function>} sync() waiters, told whenever the queue shrinks or the client stops */
    this._waiters = new Set();
  }

  /**
   * Listen to an event; returns a function that removes the listener. `action` listeners may
   * return a promise: the client awaits it before acknowledging the server's `sync` (`synced`),
   * so what a failing listener missed comes again after a reconnect.
   *
   * - `action` (action, meta): an action from the server (meta: id, time, and the rest it sent);
   *   `logux/processed` is left out (see `processed`), `logux/undo` is not
   * - `processed` (answer): `{ id, action, meta }` for a pushed action, `{ channel, id, action }`
   *   for a (un)subscription
   * - `undo` (answer): the same plus `reason` and `undo` (the logux/undo action)
   * - `state` ({ state, pending }): `connecting`, `sending` (a `sync` awaits `synced`),
   *   `synchronized`, `disconnected`; `pending` is the count of unanswered queued actions
   * - `error` (SyncError): a server `error` message (`code` is its type) or a local one
   *   (`timeout`, `zombie`: a newer connection of this client id took over); after
   *   `wrong-credentials`, `wrong-subprotocol`, `wrong-protocol` and `zombie` the client stops
   *   reconnecting
   * - `debug` (text): a server `['debug', 'error', text]`
   * - `reconnect` ({ attempt, delay, code }): the next connection starts in `delay` ms
   * @param {"action" | "processed" | "undo" | "state" | "error" | "debug" | "reconnect"} event
   * @param {Function} listener
   */
  on(event, listener) {
    let listeners = this._listeners.get(event);
    if (listeners === undefined) {
      listeners = new Set();
      this._listeners.set(event, listeners);
    }
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /** Connect, and keep reconnecting (full-jitter backoff) until {@link SocketClient#stop}. */
  start() {
    if (this._running) return;
    this._running = true;
    this._attempt = 0;
    this._watchPage(true);
    this._open();
  }

  /**
   * Connect now if the client is waiting out a reconnect delay (browsers: called by itself when
   * the page comes back `online` or becomes visible, as @logux/core's Reconnect does).
   */
  reconnectNow() {
    if (!this._running || this._reconnectTimer === undefined) return;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    this._open();
  }

  /** @param {boolean} on */
  _watchPage(on) {
    const target = globalThis.window ?? globalThis.self;
    if (typeof target?.addEventListener !== "function" || globalThis.document === undefined) return;
    this._onPage ??= () => {
      if (globalThis.document.visibilityState !== "hidden") this.reconnectNow();
    };
    for (const event of ["online", "focus", "visibilitychange"]) {
      const where = event === "visibilitychange" ? globalThis.document : target;
      if (on) where.addEventListener(event, this._onPage);
      else where.removeEventListener(event, this._onPage);
    }
  }

  /** Disconnect for good (no reconnect); the queue stays saved. Resolves once saved writes are done. */
  async stop() {
    this._running = false;
    this._watchPage(false);
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    const connection = this._connection;
    this._closeSocket(1000, "stop");
    for (const waiter of this._waiters) waiter();
    // A message being handled finishes (its listeners, the saved `synced`) before stop resolves.
    await connection?.handling;
    await this._writing;
  }

  /**
   * Queue an action with a client-made id (`"<ms> <node> <seq>"`) and save the queue; resolves
   * with its meta once saved; it is sent at once when connected, else after the next connect.
   * @param {{ type: string }} action
   * @returns {Promise<{ id: string, time: number }>}
   */
  async push(action) {
    if (action === null || typeof action !== "object" || typeof action.type !== "string") {
      throw new TypeError("an action is an object with a string type");
    }
    if (byteSize(action) > this.maxMessageBytes - ENVELOPE_BYTES) {
      throw new RangeError(`the action is larger than one message (${this.maxMessageBytes} bytes)`);
    }
    await this._load();
    const meta = this._newMeta();
    this._queue.actions.push([structuredClone(action), meta]);
    await this._save("queue", this._queue);
    this._emitState();
    if (this._connection?.ready) this._sendSync([[action, meta]]);
    return { ...meta };
  }

  /**
   * A promise of the server's answer to a pushed action: resolves with the `processed` answer,
   * rejects with a SyncError (code `undo`, `reason`, `body`: the logux/undo action) on undo.
   * An answer that came already (among the last 2000) settles it at once.
   * @param {string} id the meta.id `push` resolved with
   */
  track(id) {
    const known = this._recent.get(id);
    if (known !== undefined) {
      return known.kind === "processed" ? Promise.resolve(known.result) : Promise.reject(known.error);
    }
    return new Promise((resolve, reject) => {
      const list = this._tracked.get(id) ?? [];
      list.push({ resolve, reject });
      this._tracked.set(id, list);
    });
  }

  /**
   * Subscribe to a channel (saved now; sent now when connected, else on connect). `extra` are
   * the subscribe action's other fields, e.g. `{ filter: { done: false } }`. Resubscribing with
   * other `extra` forgets the resume point (the channel's `load` runs again).
   * @param {string} channel
   * @param {object} [extra]
   */
  async subscribe(channel, extra = {}) {
    if (typeof channel !== "string" || channel === "") throw new TypeError("a channel name");
    await this._load();
    const known = this._saved.channels[channel];
    if (known !== undefined && sameJson(known.extra, extra)) return;
    this._saved.channels[channel] = { extra: structuredClone(extra) };
    this._connection?.subscribed.delete(channel);
    await this._save("socket", this._saved);
    if (this._connection?.ready) this._sendSubscribe(channel);
  }

  /**
   * Unsubscribe from a channel (forgotten now; `logux/unsubscribe` sent when connected — while
   * disconnected there is nothing to send: the server drops a socket's subscriptions with it).
   * @param {string} channel
   */
  async unsubscribe(channel) {
    await this._load();
    const known = this._saved.channels[channel];
    if (known === undefined) return;
    delete this._saved.channels[channel];
    await this._save("socket", this._saved);
    const connection = this._connection;
    connection?.subscribed.delete(channel);
    if (connection?.ready) {
      const action = { type: "logux/unsubscribe", channel, ...known.extra };
      const meta = this._newMeta();
      connection.answers.set(meta.id, { channel, action });
      this._sendSync([[action, meta]]);
    }
  }

  /**
   * Resolves once every queued action has been answered (`processed` or `undo`), like the pull
   * client's `sync()` pushing its queue. Rejects with SyncError `stopped` when the client is
   * stopped first, or `aborted` on `signal`.
   * @param {{ signal?: AbortSignal }} [options]
   */
  async sync({ signal } = {}) {
    await this._load();
    while (this._queue.actions.length > 0) {
      if (!this._running) throw new SyncError("the client is stopped", { code: "stopped" });
      if (signal?.aborted) throw new SyncError("aborted", { code: "aborted" });
      await new Promise((resolve) => {
        const done = () => {
          this._waiters.delete(done);
          signal?.removeEventListener("abort", done);
          resolve(undefined);
        };
        this._waiters.add(done);
        signal?.addEventListener("abort", done);
      });
    }
  }

  /** The queued actions the server has not answered yet, oldest first: `[action, meta][]`. */
  async pending() {
    await this._load();
    return structuredClone(this._queue.actions);
  }

  /** The subscriptions: `{ channel, extra, since }[]` (`since`: the resume point, if any). */
  async subscriptions() {
    await this._load();
    return Object.entries(this._saved.channels).map(([channel, { extra, since }]) => ({
      channel,
      extra: structuredClone(extra),
      since: since && { ...since },
    }));
  }

  /** The `added` of the last server `sync` handled (sent in `connect`). */
  async synced() {
    await this._load();
    return this._saved.synced;
  }

  // ---- the connection ---------------------------------------------------------------------

  _open() {
    if (!this._running) return;
    this._setState("connecting");
    let socket;
    try {
      socket = new this.WebSocket(this.url);
    } catch (error) {
      this._emit("error", new SyncError(`cannot open ${this.url}`, { code: "network", cause: error }));
      this._scheduleReconnect(undefined);
      return;
    }
    this._socket = socket;
    /** The state of one connection; dropped with it. */
    const connection = {
      socket,
      ready: false,
      baseTime: 0,
      connectSent: 0,
      /** @type {Map<number, true>} `added` of the sent syncs awaiting `synced` */
      outstanding: new Map(),
      /** @type {Map<string, { channel: string, action: object }>} subscribe/unsubscribe ids */
      answers: new Map(),
      /** @type {Set<string>} ids of queued actions sent on this connection (sent once each) */
      sent: new Set(),
      /** @type {Set<string>} channels subscribed on this connection */
      subscribed: new Set(),
      /** @type {Promise<void>} received messages are handled one at a time, in order */
      handling: Promise.resolve(),
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      timeoutTimer: undefined,
      /** an answer (`connected`, `synced`, `pong`) is awaited until the timeout timer fires */
      awaiting: false,
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      pingTimer: undefined,
      fatal: false,
    };
    this._connection = connection;
    this._armTimeout(connection); // the socket must open and be `connected` within `timeout`
    socket.onopen = () => {
      if (this._connection !== connection) return;
      this._sendConnect(connection).catch((error) => {
        this._emit("error", new SyncError("no token", { code: "token", cause: error }));
        this._closeSocket(1000, "no token");
      });
    };
    socket.onmessage = (/** @type {{ data: unknown }} */ event) => {
      if (this._connection !== connection) return;
      const text = typeof event.data === "string" ? event.data : String(event.data);
      connection.handling = connection.handling
        .then(() => this._receive(connection, text))
        .catch((error) => {
          this._emit("error", new SyncError(`handling a message failed: ${error}`, {
            code: "listener", cause: error,
          }));
          // Not acknowledged: reconnecting brings the unacknowledged actions again.
          this._dropConnection(connection, 4000, "listener failed");
        });
    };
    socket.onerror = () => {};
    socket.onclose = (/** @type {{ code: number, reason: string }} */ event) => {
      if (this._connection !== connection) return;
      this._ended(connection, event.code, event.reason);
    };
  }

  /** @param {any} connection */
  async _sendConnect(connection) {
    await this._load();
    const token = typeof this.token === "function" ? await this.token() : this.token;
    if (this._connection !== connection) return;
    const options = {};
    if (token !== undefined && token !== null) options.token = String(token);
    if (this.subprotocol !== undefined) options.subprotocol = this.subprotocol;
    connection.connectSent = Date.now();
    const message = ["connect", PROTOCOL, this.node, this._saved.synced];
    if (Object.keys(options).length > 0) message.push(options);
    this._send(connection, message);
    this._armTimeout(connection);
  }

  /** @param {any} connection @param {string} text */
  async _receive(connection, text) {
    if (this._connection !== connection) return;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this._send(connection, ["error", "wrong-format", text]);
      this._dropConnection(connection, 1000, "wrong-format");
      return;
    }
    if (!Array.isArray(message) || typeof message[0] !== "string") {
      this._send(connection, ["error", "wrong-format", text]);
      this._dropConnection(connection, 1000, "wrong-format");
      return;
    }
    this._armPing(connection);
    const [type, ...args] = message;
    switch (type) {
      case "connected":
        return this._connected(connection, args);
      case "sync":
        return this._receiveSync(connection, args);
      case "synced":
        connection.outstanding.delete(args[0]);
        this._stopTimeout(connection);
        if (connection.outstanding.size === 0) this._setState("synchronized");
        else this._armTimeout(connection);
        return;
      case "ping":
        this._send(connection, ["pong", this._added]);
        return;
      case "pong":
        this._stopTimeout(connection);
        if (connection.outstanding.size > 0) this._armTimeout(connection);
        return;
      case "error":
        return this._receiveError(connection, args);
      case "debug":
        this._emit("debug", args[1]);
        return;
      case "headers":
        this.remoteHeaders = args[0] ?? {};
        return;
      case "duilian":
        if (args[0] === "金木水火土") this._send(connection, ["duilian", "板城烧锅酒"]);
        return;
      default:
        this._send(connection, ["error", "unknown-message", type]);
        this._dropConnection(connection, 1000, "unknown-message");
    }
  }

  /** @param {any} connection @param {any[]} args */
  async _connected(connection, [protocol, remoteNode, times]) {
    this._stopTimeout(connection);
    if (typeof protocol !== "number" || protocol < PROTOCOL) {
      this._send(connection, ["error", "wrong-protocol", { supported: PROTOCOL, used: protocol }]);
      connection.fatal = true;
      this._emit("error", new SyncError("the server speaks an old protocol", {
        code: "wrong-protocol",
      }));
      this._dropConnection(connection, 1000, "wrong-protocol");
      return;
    }
    const [start, end] = Array.isArray(times) ? times : [Date.now(), Date.now()];
    connection.baseTime = end;
    if (this.fixTime) {
      // As @logux/core's ClientNode: the auth time is left out of the round trip.
      const roundTrip = Date.now() - connection.connectSent - (end - start);
      this.timeFix = Math.floor(connection.connectSent - start + roundTrip / 2);
    }
    this.remoteNode = remoteNode;
    connection.ready = true;
    this._attempt = 0;
    for (const batch of this._batches(this._queue.actions)) this._sendSync(batch);
    for (const channel of Object.keys(this._saved.channels)) this._sendSubscribe(channel);
    if (connection.outstanding.size === 0) this._setState("synchronized");
  }

  /** @param {any} connection @param {any[]} args */
  async _receiveSync(connection, [added, ...entries]) {
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const action = entries[i];
      const meta = this._expandMeta(connection, entries[i + 1]);
      await this._handle(connection, action, meta);
    }
    if (typeof added === "number" && added > this._saved.synced) {
      this._saved.synced = added;
      await this._save("socket", this._saved);
    }
    if (this._connection === connection) this._send(connection, ["synced", added]);
  }

  /** @param {any} connection @param {any} action @param {any} meta */
  async _handle(connection, action, meta) {
    if (action?.type === "logux/processed") {
      await this._answered(connection, action, meta, "processed");
      return;
    }
    if (this._seenSet.has(meta.id)) return;
    if (action?.type === "logux/undo") await this._answered(connection, action, meta, "undo");
    await this._emitAwaited("action", action, meta);
    // Only once handled: an action whose listener threw comes again and is emitted again.
    this._remember(meta.id);
  }

  /**
   * A `logux/processed` or `logux/undo`: the answer to a queued action (it leaves the queue) or
   * to a (un)subscription of this connection (a subscribe's `processed` is its resume point).
   * @param {any} connection @param {any} answer @param {any} meta
   * @param {"processed" | "undo"} kind
   */
  async _answered(connection, answer, meta, kind) {
    const id = answer.id;
    const undo = kind === "undo" ? { reason: answer.reason, undo: answer } : {};
    const index = this._queue.actions.findIndex(([, queued]) => queued.id === id);
    if (index >= 0) {
      const [[action, queuedMeta]] = this._queue.actions.splice(index, 1);
      await this._save("queue", this._queue);
      this._emitState();
      for (const waiter of this._waiters) waiter();
      const result = { id, action, meta: queuedMeta, ...undo };
      const error = kind === "undo"
        ? new SyncError(`the server undid ${id}: ${answer.reason}`, {
          code: "undo", reason: answer.reason, body: answer,
        })
        : undefined;
      this._recent.set(id, { kind, result, error });
      if (this._recent.size > SEEN_WINDOW) this._recent.delete(this._recent.keys().next().value);
      for (const { resolve, reject } of this._tracked.get(id) ?? []) {
        if (error === undefined) resolve(result);
        else reject(error);
      }
      this._tracked.delete(id);
      await this._emitAwaited(kind, result);
      return;
    }
    const asked = connection.answers.get(id);
    if (asked === undefined) return;
    connection.answers.delete(id);
    const { channel, action } = asked;
    const saved = this._saved.channels[channel];
    if (action.type === "logux/subscribe" && saved !== undefined) {
      if (kind === "processed") saved.since = { id: meta.id, time: meta.time };
      else delete this._saved.channels[channel];
      await this._save("socket", this._saved);
    }
    await this._emitAwaited(kind, { channel, id, action, ...undo });
  }

  /** @param {any} connection @param {any[]} args */
  _receiveError(connection, [code, options]) {
    const fatal = FATAL.has(code);
    if (fatal) connection.fatal = true;
    this._emit("error", new SyncError(`the server sent error ${code}`, {
      code, body: options, reason: typeof options === "string" ? options : undefined,
    }));
    if (fatal) {
      this._running = false;
      this._watchPage(false);
    }
  }

  /** @param {any} connection @param {number | undefined} code @param {string} [reason] */
  _ended(connection, code, reason) {
    this._stopTimeout(connection);
    if (reason === "zombie") {
      // A newer connection of the same client id took over (another tab with this node id, or
      // this client again after a half-open socket): reconnecting would only take it back.
      connection.fatal = true;
      this._emit("error", new SyncError("another connection of this client took over", {
        code: "zombie",
      }));
    }
    clearTimeout(connection.pingTimer);
    connection.ready = false;
    this._connection = undefined;
    this._socket = undefined;
    this._setState("disconnected");
    if (connection.fatal) {
      this._running = false;
      this._watchPage(false);
    }
    if (!this._running) {
      for (const waiter of this._waiters) waiter();
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  /** @param {number | undefined} code @param {string} [reason] the close reason */
  _scheduleReconnect(code, reason) {
    if (!this._running || this._reconnectTimer !== undefined) return;
    let delay = backoffDelay(this._attempt, this.backoff, this.random);
    if (code === TRY_AGAIN_LATER) {
      const hint = RETRY_HINT.exec(reason ?? "");
      // The server's hint is jittered already; our own floor gets jitter here.
      const wait = hint ? Number(hint[1]) * 1000 : this.busyDelay * (1 + this.random());
      delay = Math.max(delay, wait);
    }
    this._attempt += 1;
    this._emit("reconnect", { attempt: this._attempt, delay, code });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = undefined;
      this._open();
    }, delay);
  }

  /** Close a connection and treat it as ended now (without waiting for the close event). */
  _dropConnection(connection, code, reason) {
    if (this._connection !== connection) return;
    try {
      connection.socket.close(code, reason);
    } catch {
      // already closing
    }
    this._ended(connection, code);
  }

  _closeSocket(code, reason) {
    const connection = this._connection;
    if (connection === undefined) return;
    this._dropConnection(connection, code, reason);
  }

  // ---- sending ----------------------------------------------------------------------------

  /** @param {any} connection @param {unknown[]} message */
  _send(connection, message) {
    if (connection.socket.readyState !== OPEN) return;
    connection.socket.send(JSON.stringify(message));
    this._armPing(connection);
  }

  /** @param {[object, { id: string, time: number }][]} entries */
  _sendSync(entries) {
    const connection = this._connection;
    if (!connection?.ready) return;
    // push() and a (re)connect may both offer a queued action: it goes once per connection.
    entries = entries.filter(([, meta]) => !connection.sent.has(meta.id));
    if (entries.length === 0) return;
    for (const [, meta] of entries) connection.sent.add(meta.id);
    this._added += 1;
    const added = this._added;
    const message = ["sync", added];
    for (const [action, meta] of entries) message.push(action, this._shortMeta(connection, meta));
    connection.outstanding.set(added, true);
    this._setState("sending");
    this._send(connection, message);
    this._armTimeout(connection);
  }

  /**
   * The queue cut into `sync` messages: at most `syncBatch` actions and about
   * `maxMessageBytes` each (an action's meta is counted as ENVELOPE_BYTES).
   * @param {[object, { id: string, time: number }][]} entries
   */
  _batches(entries) {
    const batches = [];
    let batch = [];
    let bytes = ENVELOPE_BYTES;
    for (const entry of entries) {
      const size = byteSize(entry[0]) + ENVELOPE_BYTES;
      if (batch.length > 0 && (batch.length >= this.syncBatch || bytes + size > this.maxMessageBytes)) {
        batches.push(batch);
        batch = [];
        bytes = ENVELOPE_BYTES;
      }
      batch.push(entry);
      bytes += size;
    }
    if (batch.length > 0) batches.push(batch);
    return batches;
  }

  /** @param {string} channel */
  _sendSubscribe(channel) {
    const connection = this._connection;
    const saved = this._saved.channels[channel];
    if (!connection?.ready || saved === undefined || connection.subscribed.has(channel)) return;
    connection.subscribed.add(channel);
    const action = { type: "logux/subscribe", channel, ...saved.extra };
    if (saved.since !== undefined) action.since = { ...saved.since };
    const meta = this._newMeta();
    connection.answers.set(meta.id, { channel, action });
    this._sendSync([[action, meta]]);
  }

  /** A new meta `{ id, time }` with a client-made id that never goes back. */
  _newMeta() {
    const time = Date.now();
    const queue = this._queue;
    queue.seq = time > queue.ms ? 0 : queue.seq + 1;
    queue.ms = Math.max(queue.ms, time);
    return { id: `${queue.ms} ${this.node} ${queue.seq}`, time };
  }

  /**
   * A meta as sent (@logux/core's sendSync): `time` relative to the connection's baseTime and
   * back in the server's clock, the id shortened relative to baseTime (not time-fixed).
   * @param {any} connection @param {{ id: string, time: number }} meta
   */
  _shortMeta(connection, meta) {
    const base = connection.baseTime;
    const [ms, node, seq] = splitId(meta.id);
    const shift = Number(ms) - base;
    let id;
    if (node === this.node) id = Number(seq) === 0 ? shift : [shift, Number(seq)];
    else id = [shift, node, Number(seq)];
    return { ...meta, id, time: meta.time - this.timeFix - base };
  }

  /**
   * A received meta expanded: the id in full, `time` in this clock (@logux/core's syncMessage).
   * @param {any} connection @param {any} meta
   */
  _expandMeta(connection, meta) {
    const base = connection.baseTime;
    const wire = meta.id;
    let id;
    if (Array.isArray(wire)) {
      id = wire.length === 2
        ? `${wire[0] + base} ${this.remoteNode} ${wire[1]}`
        : `${wire[0] + base} ${wire[1]} ${wire[2]}`;
    } else if (typeof wire === "number") {
      id = `${wire + base} ${this.remoteNode} 0`;
    } else {
      id = wire;
    }
    return { ...meta, id, time: meta.time + base + this.timeFix };
  }

  // ---- timers -----------------------------------------------------------------------------

  /** Expect an answer within `timeout` ms; an answer already awaited keeps its deadline. */
  _armTimeout(connection) {
    if (connection.awaiting) return;
    connection.awaiting = true;
    connection.timeoutTimer = setTimeout(() => {
      connection.awaiting = false;
      this._emit("error", new SyncError(`no answer within ${this.timeout} ms`, { code: "timeout" }));
      this._dropConnection(connection, 1000, "timeout");
    }, this.timeout);
  }

  _stopTimeout(connection) {
    clearTimeout(connection.timeoutTimer);
    connection.awaiting = false;
  }

  _armPing(connection) {
    clearTimeout(connection.pingTimer);
    connection.pingTimer = setTimeout(() => {
      if (this._connection !== connection || !connection.ready) return;
      if (connection.awaiting) return; // the pending timeout decides
      this._send(connection, ["ping", this._added]);
      this._armTimeout(connection);
    }, this.pingMs);
  }

  // ---- state and storage ------------------------------------------------------------------

  /** @param {"disconnected" | "connecting" | "sending" | "synchronized"} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emitState();
  }

  _emitState() {
    this._emit("state", { state: this.state, pending: this._queue.actions.length });
  }

  /** @param {string} id */
  _remember(id) {
    this._seen.push(id);
    this._seenSet.add(id);
    if (this._seen.length > SEEN_WINDOW) this._seenSet.delete(this._seen.shift());
  }

  _load() {
    this._loading ??= (async () => {
      const queue = await this.storage.get(`${this.keyPrefix}queue`);
      if (queue && Array.isArray(queue.actions)) this._queue = queue;
      const saved = await this.storage.get(`${this.keyPrefix}socket`);
      if (saved && typeof saved === "object") {
        this._saved = { synced: Number(saved.synced) || 0, channels: saved.channels ?? {} };
      }
    })();
    return this._loading;
  }

  /** @param {string} key @param {unknown} value */
  _save(key, value) {
    const snapshot = structuredClone(value);
    const done = this._writing.then(() => this.storage.set(`${this.keyPrefix}${key}`, snapshot));
    this._writing = done.catch(() => {});
    return done;
  }

  /** @param {string} event @param {...unknown} args */
  _emit(event, ...args) {
    for (const listener of this._listeners.get(event) ?? []) {
      try {
        const result = listener(...args);
        if (result && typeof result.catch === "function") result.catch(() => {});
      } catch {
        // a state or error listener must not break the connection
      }
    }
  }

  /** @param {string} event @param {...unknown} args */
  async _emitAwaited(event, ...args) {
    for (const listener of this._listeners.get(event) ?? []) await listener(...args);
  }
}

/** Bytes allowed for one meta and the message's own brackets: more than they ever take. */
const ENVELOPE_BYTES = 1024;

const encoder = new TextEncoder();

/** The UTF-8 size of a value's JSON. @param {unknown} value */
function byteSize(value) {
  return encoder.encode(JSON.stringify(value)).length;
}

/** @param {string} id @returns {[string, string, string]} */
function splitId(id) {
  const first = id.indexOf(" ");
  const last = id.lastIndexOf(" ");
  return [id.slice(0, first), id.slice(first + 1, last), id.slice(last + 1)];
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}
