/**
 * Test helpers: a PullClient of a test user that records what it is told, a fetch that counts
 * and keeps the request bodies, and `within` (every wait of a test has a deadline).
 */

import { PullClient } from "../src/pull.js";

let clients = 0;

/**
 * `within(ms, promise)`: the promise's value, or a failure once `ms` have passed.
 * @template T @param {number} ms @param {Promise<T>} promise @param {string} [what]
 * @returns {Promise<T>}
 */
export function within(ms, promise, what = "the awaited event") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A fetch that records the parsed body of every request (`calls`) before sending it. */
export function recordingFetch() {
  /** @type {any[]} */
  const calls = [];
  /** @type {typeof globalThis.fetch & { calls: any[] }} */
  const wrapped = Object.assign(
    (/** @type {any} */ url, /** @type {any} */ init) => {
      calls.push(init?.body ? JSON.parse(init.body) : undefined);
      return globalThis.fetch(url, init);
    },
    { calls },
  );
  return wrapped;
}

/**
 * A client of user `user` (token `secret-<user>`, as test/app.py wants) recording its events in
 * `client.seen`: `actions` ([action, meta]), `processed`, `undo`, `resets`, `retries`, `errors`.
 * @param {string} url @param {string} user @param {Record<string, any>} [options]
 */
export function testClient(url, user, options = {}) {
  clients += 1;
  const fetch = options.fetch ?? recordingFetch();
  const client = new PullClient({
    url,
    node: options.node ?? `${user}:c${process.pid}x${clients}`,
    token: `secret-${user}`,
    backoff: { base: 10, cap: 100 },
    ...options,
    fetch,
  });
  const seen = { actions: [], processed: [], undo: [], resets: [], retries: [], errors: [] };
  client.on("action", (action, meta) => seen.actions.push([action, meta]));
  client.on("processed", (answer) => seen.processed.push(answer));
  client.on("undo", (answer) => seen.undo.push(answer));
  client.on("reset", (reset) => seen.resets.push(reset));
  client.on("retry", (retry) => seen.retries.push(retry));
  client.on("error", (error) => seen.errors.push(error));
  return Object.assign(client, { seen, calls: fetch.calls });
}

/** The app's actions among `[action, meta]` entries: without the logux/* answers in the page. */
export function appActions(entries) {
  return entries.filter(([action]) => !action.type.startsWith("logux/"));
}

/**
 * Wait until the server at `url` has `count` long-polls waiting (its `logsync_pull_waiting`
 * gauge), polling /metrics every 20 ms for at most `ms`.
 * @param {string} url @param {number} [count] @param {number} [ms]
 */
export async function longPollsWaiting(url, count = 1, ms = 10_000) {
  const end = performance.now() + ms;
  for (;;) {
    const text = await (await fetch(`${url}/metrics`)).text();
    const match = /^logsync_pull_waiting (\S+)$/m.exec(text);
    if (match && Number(match[1]) >= count) return;
    if (performance.now() > end) throw new Error(`no ${count} long-poll(s) waiting after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
