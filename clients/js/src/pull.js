/**
 * PullClient: push queued actions to a logsync server and pull what the client missed, over
 * `POST /v1/sync` (the contract: docs/http-pull.md of the logsync repository). JSON only.
 *
 *   const client = new PullClient({ url: "https://sync.example", node: "10:phone", token });
 *   client.on("action", (action, meta) => { ... });
 *   await client.subscribe("rooms/1");
 *   await client.push({ type: "rooms/add", text: "hi" });
 *   await client.sync();             // push the queue, then pull every page
 *
 * What the client keeps in its storage adapter (storage.js), under `<keyPrefix>queue`,
 * `<keyPrefix>cursor` and `<keyPrefix>channels`: the actions not yet answered by the server, the
 * cursor of the last page the client has handled, and its subscriptions.
 */

import { MemoryStorage } from "./storage.js";

/** Seconds a long-poll may wait, as the server allows (docs/http-pull.md). */
export const MAX_WAIT_S = 25;

const RETRIED_STATUSES = new Set([408, 429, 502, 503, 504]);

/**
 * Why a sync failed: the server refused the request (`status`, `code`: the body's `error`,
 * `reason`), or the retries ran out (`code` "retries-exhausted", `cause`: the last failure).
 */
export class SyncError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, code: string, reason?: string, body?: unknown, cause?: unknown }} details
   */
  constructor(message, { status, code, reason, body, cause }) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "SyncError";
    this.status = status;
    this.code = code;
    this.reason = reason;
    this.body = body;
  }
}

/**
 * The full-jitter backoff delay before retry number `attempt` (0 for the first retry):
 * uniformly random in [0, min(cap, base * 2^attempt)) milliseconds.
 * @param {number} attempt
 * @param {{ base: number, cap: number }} bounds
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, { base, cap }, random = Math.random) {
  return random() * Math.min(cap, base * 2 ** attempt);
}

/**
 * `Retry-After` in milliseconds: delay-seconds (fractions accepted) or an HTTP date;
 * undefined when absent or unreadable.
 * @param {string | null | undefined} header
 * @param {number} [now]
 */
export function parseRetryAfter(header, now = Date.now()) {
  if (header == null || header.trim() === "") return undefined;
  const text = header.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

const NODE_ID = /^[^\s:]+:[^\s:]+(:[^\s]+)?$/;

/**
 * A pull-only logsync client. Construct it, add listeners with {@link PullClient#on}, queue
 * actions with {@link PullClient#push}, choose channels with {@link PullClient#subscribe}, then
 * call {@link PullClient#sync} (or {@link PullClient#pull}) whenever the client should catch up.
 */
export class PullClient {
  /**
   * @param {object} options
   * @param {string} options.url the server's base URL (`http(s)://host:port`); `/v1/sync` is added
   * @param {string} options.node the node id, `user:client[:tab]` (`false:client` for no user)
   * @param {string | (() => string | Promise<string>)} options.token sent with every request
   * @param {import("./storage.js").Storage} [options.storage] default: a MemoryStorage
   * @param {number} [options.subprotocol] the app's subprotocol, as in `connect`
   * @param {typeof globalThis.fetch} [options.fetch] default globalThis.fetch
   * @param {number} [options.limit] page size asked for (default: the server's)
   * @param {number} [options.pushBatch] queued actions sent per request (default 100)
   * @param {{ base?: number, cap?: number }} [options.backoff] ms, default { base: 250, cap: 30000 }
   * @param {number} [options.maxAttempts] tries of one request before failing (default 8)
   * @param {number} [options.timeout] ms a request may take beyond its `wait` (default 30000)
   * @param {string} [options.keyPrefix] storage key prefix (default `logsync:<node>:`)
   * @param {() => number} [options.random] for the jitter (default Math.random)
   */
  constructor({
    url,
    node,
    token,
    storage = new MemoryStorage(),
    subprotocol,
    fetch = globalThis.fetch,
    limit,
    pushBatch = 100,
    backoff = {},
    maxAttempts = 8,
    timeout = 30_000,
    keyPrefix,
    random = Math.random,
  }) {
    if (typeof url !== "string" || url === "") throw new TypeError("url is required");
    if (typeof node !== "string" || !NODE_ID.test(node)) {
      throw new TypeError(`node must be "user:client[:tab]", not ${JSON.stringify(node)}`);
    }
    if (typeof fetch !== "function") throw new TypeError("no fetch: pass options.fetch");
    if (!(Number.isInteger(pushBatch) && pushBatch > 0)) throw new RangeError("pushBatch > 0");
    if (!(Number.isInteger(maxAttempts) && maxAttempts > 0)) throw new RangeError("maxAttempts > 0");
    this.url = url.endsWith("/") ? url : `${url}/`;
    this.endpoint = new URL("v1/sync", this.url).href;
    this.node = node;
    this.token = token;
    this.storage = storage;
    this.subprotocol = subprotocol;
    this.fetch = fetch;
    this.limit = limit;
    this.pushBatch = pushBatch;
    this.backoff = { base: backoff.base ?? 250, cap: backoff.cap ?? 30_000 };
    this.maxAttempts = maxAttempts;
    this.timeout = timeout;
    this.keyPrefix = keyPrefix ?? `logsync:${node}:`;
    this.random = random;
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Promise<void> | undefined} */
    this._loading = undefined;
    /** @type {Set<string> | undefined} channels whose subscribe is out, awaiting its answer */
    this._sending = undefined;
    /** @type {Promise<unknown>} one sync or pull at a time */
    this._running = Promise.resolve();
    /** @type {Promise<void>} one storage write at a time, in call order */
    this._writing = Promise.resolve();
    /** @type {{ actions: [object, { id: string, time: number }][], ms: number, seq: number }} */
    this._queue = { actions: [], ms: 0, seq: -1 };
    /** @type {string | null} */
    this._cursor = null;
    /** @type {{ subscribe: Record<string, { extra: object, active: boolean }>, unsubscribe: string[] }} */
    this._channels = { subscribe: {}, unsubscribe: [] };
  }

  /**
   * Listen to an event; returns a function that removes the listener. A listener may return a
   * promise: the client awaits it (the cursor is saved only after the `action` listeners of a
   * page are done). A listener that throws fails the sync; what it was told is told again then.
   *
   * - `action` (action, meta): an action of the page (meta: id, time, added, subprotocol);
   *   `logux/processed` entries are left out (the `processed` event reports answers), a
   *   logged `logux/undo` is not
   * - `processed` (answer): the server processed a pushed action or a (un)subscription
   * - `undo` (answer): the server refused one (`reason`, `undo`: the logux/undo action)
   *   Answers carry `action` (and `meta` for pushed actions; `channel` for subscriptions).
   * - `reset` ({ reason, cursor, resubscribe }): the server refused the cursor (409)
   * - `retry` ({ attempt, delay, status, error }): a request is tried again after `delay` ms
   * - `error` (SyncError): a sync failed (its promise rejects with the same error)
   * @param {"action" | "processed" | "undo" | "reset" | "retry" | "error"} event
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

  /**
   * Queue an action with a client-made id (`"<ms> <node> <seq>"`) and save the queue; resolves
   * with its meta once saved. The next {@link PullClient#sync} sends it.
   * @param {{ type: string }} action
   * @returns {Promise<{ id: string, time: number }>}
   */
  async push(action) {
    if (action === null || typeof action !== "object" || typeof action.type !== "string") {
      throw new TypeError("an action is an object with a string type");
    }
    await this._load();
    const time = Date.now();
    const queue = this._queue;
    queue.seq = time > queue.ms ? 0 : queue.seq + 1;
    queue.ms = Math.max(queue.ms, time);
    const meta = { id: `${time} ${this.node} ${queue.seq}`, time };
    queue.actions.push([structuredClone(action), meta]);
    await this._save("queue", queue);
    return { ...meta };
  }

  /**
   * Subscribe to a channel (sent with the next request; saved now). `extra` are the subscribe
   * action's other fields, e.g. `{ filter: { done: false } }`.
   * @param {string} channel
   * @param {object} [extra]
   */
  async subscribe(channel, extra = {}) {
    if (typeof channel !== "string" || channel === "") throw new TypeError("a channel name");
    await this._load();
    const channels = this._channels;
    const known = channels.subscribe[channel];
    if (known?.active && sameJson(known.extra, extra)) return;
    channels.subscribe[channel] = { extra: structuredClone(extra), active: false };
    channels.unsubscribe = channels.unsubscribe.filter((name) => name !== channel);
    await this._save("channels", channels);
  }

  /**
   * Unsubscribe from a channel (sent with the next request; saved now). A subscription the server
   * has not heard of yet is simply dropped.
   * @param {string} channel
   */
  async unsubscribe(channel) {
    await this._load();
    const channels = this._channels;
    const known = channels.subscribe[channel];
    delete channels.subscribe[channel];
    const unheardOf = known !== undefined && !known.active && !this._sending?.has(channel);
    if (!unheardOf && !channels.unsubscribe.includes(channel)) channels.unsubscribe.push(channel);
    await this._save("channels", channels);
  }

  /** The queued actions the server has not answered yet, oldest first: `[action, meta][]`. */
  async pending() {
    await this._load();
    return structuredClone(this._queue.actions);
  }

  /** The subscriptions as the client has them: `{ channel, extra, active }[]`. */
  async subscriptions() {
    await this._load();
    return Object.entries(this._channels.subscribe).map(([channel, { extra, active }]) => ({
      channel,
      extra: structuredClone(extra),
      active,
    }));
  }

  /** The saved cursor (opaque), or null before the first page. */
  async cursor() {
    await this._load();
    return this._cursor;
  }

  /**
   * The server's Web Push key (`GET /v1/vapid`): the base64url `applicationServerKey` for
   * `pushManager.subscribe`, or null when the server has no VAPID key (Web Push off).
   * @param {{ signal?: AbortSignal }} [options]
   */
  async vapidKey({ signal } = {}) {
    const { status, data } = await this._request("GET", new URL("v1/vapid", this.url).href, {
      signal,
    });
    if (status === 404) return null;
    if (status !== 200 || typeof data?.publicKey !== "string") throw await this._refused(status, data);
    return data.publicKey;
  }

  /**
   * Ask to be woken when something lands for this client while it is not pulling
   * (`POST /v1/wakeups`): `{ webpush: pushSubscription.toJSON() }` or `{ webhook: { url } }`.
   * Resolves with the registration's id (the same for the same endpoint).
   * @param {{ webpush: object } | { webhook: { url: string } }} target
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {Promise<string>}
   */
  async registerWakeup(target, { signal } = {}) {
    const url = new URL("v1/wakeups", this.url).href;
    const body = { node: this.node, ...target };
    const { status, data } = await this._request("POST", url, {
      body, signal, bearer: await this._token(),
    });
    if (status !== 201 || typeof data?.id !== "string") throw await this._refused(status, data);
    return data.id;
  }

  /**
   * This client's wake-up registrations (`GET /v1/wakeups`): `{ id, kind, endpoint }[]`.
   * @param {{ signal?: AbortSignal }} [options]
   */
  async wakeups({ signal } = {}) {
    const url = new URL(`v1/wakeups?node=${encodeURIComponent(this.node)}`, this.url).href;
    const { status, data } = await this._request("GET", url, { signal, bearer: await this._token() });
    if (status !== 200 || !Array.isArray(data?.wakeups)) throw await this._refused(status, data);
    return data.wakeups;
  }

  /**
   * Remove a wake-up registration (`DELETE /v1/wakeups/{id}`).
   * @param {string} id @param {{ signal?: AbortSignal }} [options]
   */
  async removeWakeup(id, { signal } = {}) {
    const path = `v1/wakeups/${encodeURIComponent(id)}?node=${encodeURIComponent(this.node)}`;
    const { status, data } = await this._request("DELETE", new URL(path, this.url).href, {
      signal, bearer: await this._token(),
    });
    if (status !== 204) throw await this._refused(status, data);
  }

  /**
   * Forget everything this client saved (queue, cursor, subscriptions), e.g. on log-out. The
   * server keeps its subscriptions until `pull_state_ttl_ms`; unsubscribe and sync first to end
   * them now.
   */
  clear() {
    return this._serially(async () => {
      this._queue = { actions: [], ms: this._queue.ms, seq: this._queue.seq };
      this._cursor = null;
      this._channels = { subscribe: {}, unsubscribe: [] };
      for (const key of ["queue", "cursor", "channels"]) {
        const done = this._writing.then(() => this.storage.delete(`${this.keyPrefix}${key}`));
        this._writing = done.catch(() => {});
        await done;
      }
    });
  }

  /**
   * One request without pushing: (un)subscriptions and one page after the cursor.
   * @param {{ wait?: number, limit?: number, signal?: AbortSignal }} [options] `wait`: long-poll
   *   seconds (0..25) when there is nothing new
   * @returns {Promise<{ received: number, more: boolean }>}
   */
  pull({ wait = 0, limit, signal } = {}) {
    return this._serially(async () => {
      const totals = newTotals();
      const { more } = await this._exchange([], { wait, limit, signal }, totals);
      return { received: totals.received, more };
    });
  }

  /**
   * Push the queue (oldest first, `pushBatch` per request) and pull every page (repeating while
   * the server says `more`). With `wait`, the last request long-polls when nothing is new.
   * Resolves with counts; rejects with a {@link SyncError} (also emitted as `error`).
   * @param {{ wait?: number, limit?: number, signal?: AbortSignal }} [options]
   * @returns {Promise<{ received: number, processed: number, undone: number, resets: number }>}
   */
  sync({ wait = 0, limit, signal } = {}) {
    return this._serially(async () => {
      const totals = newTotals();
      /** @type {Set<string>} ids sent by this sync: one that stays unanswered is not sent again */
      const sent = new Set();
      for (;;) {
        const unsent = this._queue.actions.filter(([, meta]) => !sent.has(meta.id));
        const batch = unsent.slice(0, this.pushBatch);
        for (const [, meta] of batch) sent.add(meta.id);
        const last = unsent.length <= this.pushBatch;
        const { more } = await this._exchange(batch, { wait: last ? wait : 0, limit, signal }, totals);
        if (!more && last) return totals;
      }
    });
  }

  /** @template T @param {() => Promise<T>} task @returns {Promise<T>} */
  _serially(task) {
    const run = this._running.then(async () => {
      await this._load();
      return task();
    });
    this._running = run.catch(() => {});
    return run;
  }

  /**
   * One request (with its retries and resets) and its handling.
   * @param {[object, { id: string, time: number }][]} actions
   * @param {{ wait: number, limit?: number, signal?: AbortSignal }} options
   * @param {ReturnType<typeof newTotals>} totals
   */
  async _exchange(actions, { wait, limit, signal }, totals) {
    for (;;) {
      const subscribe = Object.entries(this._channels.subscribe)
        .filter(([, subscription]) => !subscription.active)
        .map(([channel, subscription]) => ({ channel, record: subscription }));
      const unsubscribe = [...this._channels.unsubscribe];
      /** @type {Record<string, unknown>} */
      const body = { node: this.node, token: await this._token() };
      if (this.subprotocol !== undefined) body.subprotocol = this.subprotocol;
      if (this._cursor !== null) body.cursor = this._cursor;
      if (subscribe.length > 0) {
        body.subscribe = subscribe.map(({ channel, record }) => ({ ...record.extra, channel }));
      }
      if (unsubscribe.length > 0) body.unsubscribe = unsubscribe.map((channel) => ({ channel }));
      if (actions.length > 0) body.actions = actions;
      if ((limit ?? this.limit) !== undefined) body.limit = limit ?? this.limit;
      if (wait > 0) body.wait = wait;

      // Until their answers are handled, an unsubscribe of these must reach the server.
      this._sending = new Set(subscribe.map(({ channel }) => channel));
      let status;
      let data;
      try {
        ({ status, data } = await this._request("POST", this.endpoint, { body, wait, signal }));
        if (status === 200 && typeof data?.cursor === "string") {
          return await this._handle(data, actions, subscribe, unsubscribe, totals);
        }
      } finally {
        this._sending = undefined;
      }
      if (status === 409 && data?.error === "reset" && typeof data.cursor === "string") {
        totals.resets += 1;
        if (totals.resets > 3) {
          throw await this._fail(new SyncError("the server kept refusing the cursor", {
            status, code: "reset", reason: data.reason, body: data,
          }));
        }
        await this._reset(data);
        continue;
      }
      throw await this._refused(status, data);
    }
  }

  /**
   * Send a request, retrying network errors, timeouts, 408/429/5xx with full-jitter backoff
   * (at least `Retry-After` when the server gives one). Resolves with any other response.
   * @param {string} method
   * @param {string} url
   * @param {{ body?: Record<string, unknown>, wait?: number, signal?: AbortSignal,
   *   bearer?: string }} options
   * @returns {Promise<{ status: number, data: any }>}
   */
  async _request(method, url, { body, wait = 0, signal, bearer }) {
    const text = body === undefined ? undefined : JSON.stringify(body);
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json" };
    if (text !== undefined) headers["content-type"] = "application/json";
    if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
    for (let attempt = 0; ; attempt += 1) {
      signal?.throwIfAborted();
      let status;
      let retryAfter;
      let error;
      const deadline = abortAfter(this.timeout + wait * 1000, signal);
      try {
        const response = await this.fetch(url, {
          method,
          headers,
          body: text,
          signal: deadline.signal,
        });
        status = response.status;
        if (!RETRIED_STATUSES.has(status) && !(status >= 500)) {
          const raw = await response.text();
          return { status, data: raw === "" ? null : parseJson(raw) };
        }
        retryAfter = parseRetryAfter(response.headers.get("retry-after"));
        await response.body?.cancel().catch(() => {});
        error = new SyncError(`${status} from the server`, { status, code: `http-${status}` });
      } catch (failure) {
        if (signal?.aborted) throw signal.reason;
        error = failure;
      } finally {
        deadline.clear();
      }
      if (attempt + 1 >= this.maxAttempts) {
        throw await this._fail(new SyncError(`gave up after ${attempt + 1} attempts`, {
          status, code: "retries-exhausted", cause: error,
        }));
      }
      const jitter = backoffDelay(attempt, this.backoff, this.random);
      const delay = retryAfter === undefined ? jitter : Math.max(retryAfter, jitter);
      await this._emit("retry", { attempt: attempt + 1, delay, status, error });
      await sleep(delay, signal);
    }
  }

  /**
   * A 200: answers (then the queue is saved), subscription answers (then the channels are saved),
   * the page (then the cursor is saved).
   */
  async _handle(data, actions, subscribe, unsubscribe, totals) {
    const byId = new Map(actions.map((entry) => [entry[1].id, entry]));
    const answered = new Set();
    for (const answer of data.answers ?? []) {
      const entry = byId.get(answer.id);
      if (entry === undefined) continue;
      const [action, meta] = entry;
      const processed = answer.status === "processed";
      await this._emit(processed ? "processed" : "undo", { ...answer, action, meta });
      answered.add(answer.id);
      if (processed) totals.processed += 1;
      else totals.undone += 1;
    }
    if (answered.size > 0) {
      const queue = this._queue;
      queue.actions = queue.actions.filter(([, meta]) => !answered.has(meta.id));
      await this._save("queue", queue);
    }

    const items = [
      ...subscribe.map(({ channel, record }) => ({ channel, record, type: "logux/subscribe" })),
      ...unsubscribe.map((channel) => ({ channel, record: undefined, type: "logux/unsubscribe" })),
    ];
    const results = data.subscriptions ?? [];
    let changed = false;
    for (let index = 0; index < items.length && index < results.length; index += 1) {
      const { channel, record, type } = items[index];
      const result = results[index];
      if (result.channel !== undefined && result.channel !== channel) continue;
      const processed = result.status === "processed";
      const channels = this._channels;
      const action = { type, channel, ...(record?.extra ?? {}) };
      if (type === "logux/subscribe") {
        // Unless it was unsubscribed or changed while the request was out.
        if (channels.subscribe[channel] === record) {
          if (processed) record.active = true;
          else delete channels.subscribe[channel];
          changed = true;
        }
      } else if (channels.unsubscribe.includes(channel)) {
        channels.unsubscribe = channels.unsubscribe.filter((name) => name !== channel);
        changed = true;
      }
      await this._emit(processed ? "processed" : "undo", { ...result, channel, action });
    }
    if (changed) await this._save("channels", this._channels);

    const page = Array.isArray(data.actions) ? data.actions : [];
    for (const [action, meta] of page) {
      // Acknowledgements the engine logged for the client: `processed` already told them.
      if (action?.type === "logux/processed") continue;
      await this._emit("action", action, meta);
      totals.received += 1;
    }
    const moved = data.cursor !== this._cursor;
    if (moved) {
      await this._save("cursor", data.cursor);
      this._cursor = data.cursor;
    }
    // `more` with a cursor that did not move would ask for the same page forever.
    return { more: data.more === true && moved };
  }

  /** A 409 reset: the fresh cursor, every channel subscribed again (without `since`). */
  async _reset(data) {
    const channels = this._channels;
    const dropped = new Set(channels.unsubscribe);
    for (const subscription of Object.values(channels.subscribe)) subscription.active = false;
    const resubscribe = [];
    for (const item of Array.isArray(data.resubscribe) ? data.resubscribe : []) {
      const { channel, since: _since, ...extra } = typeof item === "string" ? { channel: item } : item;
      if (typeof channel !== "string" || dropped.has(channel)) continue;
      resubscribe.push(channel);
      channels.subscribe[channel] ??= { extra, active: false };
    }
    channels.unsubscribe = [];
    await this._save("channels", channels);
    await this._save("cursor", data.cursor);
    this._cursor = data.cursor;
    await this._emit("reset", {
      reason: data.reason,
      cursor: data.cursor,
      resubscribe: Object.keys(channels.subscribe),
      listed: resubscribe,
    });
  }

  /** The SyncError of a refusal (the body's `error` and `reason`), emitted as `error`. */
  async _refused(status, data) {
    const code = typeof data?.error === "string" ? data.error : `http-${status}`;
    const reason = typeof data?.reason === "string" ? data.reason : undefined;
    const message = `${status} ${code}${reason ? `: ${reason}` : ""}`;
    return this._fail(new SyncError(message, { status, code, reason, body: data }));
  }

  async _token() {
    return typeof this.token === "function" ? await this.token() : this.token;
  }

  /** Emit `error` (listeners' own failures ignored) and return the error, to be thrown. */
  async _fail(error) {
    for (const listener of this._listeners.get("error") ?? []) {
      try {
        await listener(error);
      } catch {
        // The sync fails with `error` whatever an error listener does.
      }
    }
    return error;
  }

  async _emit(event, ...args) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) await listener(...args);
  }

  _load() {
    this._loading ??= (async () => {
      const [queue, cursor, channels] = await Promise.all([
        this.storage.get(`${this.keyPrefix}queue`),
        this.storage.get(`${this.keyPrefix}cursor`),
        this.storage.get(`${this.keyPrefix}channels`),
      ]);
      if (queue) this._queue = /** @type {any} */ (queue);
      if (typeof cursor === "string") this._cursor = cursor;
      if (channels) this._channels = /** @type {any} */ (channels);
    })().catch((error) => {
      this._loading = undefined;
      throw error;
    });
    return this._loading;
  }

  /** Save a snapshot of `value` under `key`, after every earlier save. */
  _save(key, value) {
    const snapshot = structuredClone(value);
    const done = this._writing.then(() => this.storage.set(`${this.keyPrefix}${key}`, snapshot));
    this._writing = done.catch(() => {});
    return done;
  }
}

function newTotals() {
  return { received: 0, processed: 0, undone: 0, resets: 0 };
}

/** @param {unknown} a @param {unknown} b */
function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** @param {string} text */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { error: "bad-response", reason: text.slice(0, 200) };
  }
}

/**
 * A signal that aborts after `ms` or when `outer` aborts; `clear()` stops the timer.
 * @param {number} ms
 * @param {AbortSignal | undefined} outer
 */
function abortAfter(ms, outer) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer in ${ms} ms`)), ms);
  const onAbort = () => controller.abort(outer?.reason);
  outer?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    clear() {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
  };
}

/** @param {number} ms @param {AbortSignal | undefined} signal */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(undefined);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
