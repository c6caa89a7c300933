// PullClient against a real `logsync serve` (test/app.py): push and answers, subscriptions,
// filters, pages, long-polls, a lost response, refused credentials.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { SyncError } from "../src/pull.js";
import { MemoryStorage } from "../src/storage.js";
import { appActions, longPollsWaiting, testClient, within } from "../testing/clients.js";
import { startProxy } from "../testing/proxy.js";
import { startServer } from "../testing/server.js";

const ID = /^(\d+) (\S+) (\d+)$/;

describe("PullClient on a real server", () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test("push: ids are `<ms> <node> <seq>`, the queue is saved, processed empties it", async () => {
    const storage = new MemoryStorage();
    const client = testClient(server.url, "alice", { storage });
    const before = Date.now();
    const metas = [];
    for (let n = 0; n < 5; n += 1) metas.push(await client.push({ type: "tasks/add", text: `t${n}` }));
    const after = Date.now();
    for (const [index, meta] of metas.entries()) {
      const [, ms, node, seq] = ID.exec(meta.id);
      assert.equal(node, client.node);
      assert.equal(Number(ms), meta.time);
      assert.ok(meta.time >= before && meta.time <= after);
      if (index > 0) {
        const [, lastMs, , lastSeq] = ID.exec(metas[index - 1].id);
        if (lastMs === ms) assert.equal(Number(seq), Number(lastSeq) + 1);
        else assert.equal(seq, "0");
      }
    }
    // Saved before push resolved.
    const saved = await storage.get(`logsync:${client.node}:queue`);
    assert.deepEqual(saved.actions.map(([, meta]) => meta.id), metas.map((meta) => meta.id));

    const totals = await client.sync();
    assert.deepEqual(totals, { received: 0, processed: 5, undone: 0, resets: 0 });
    assert.deepEqual(client.seen.processed.map((answer) => answer.id), metas.map((m) => m.id));
    assert.equal(client.seen.processed[0].action.text, "t0");
    // Sent in creation order, in one request.
    assert.deepEqual(client.calls[0].actions.map(([, meta]) => meta.id), metas.map((m) => m.id));
    assert.deepEqual(await client.pending(), []);
    assert.deepEqual((await storage.get(`logsync:${client.node}:queue`)).actions, []);
  });

  test("a long queue goes pushBatch at a time, in creation order; only the last request waits", async () => {
    const client = testClient(server.url, "lou", { pushBatch: 3, token: async () => "secret-lou" });
    const ids = [];
    for (let n = 0; n < 7; n += 1) ids.push((await client.push({ type: "note", to: "nobody", n })).id);
    const totals = await within(10_000, client.sync({ wait: 1 }));
    assert.equal(totals.processed, 7);
    assert.deepEqual(client.calls.map((body) => body.actions?.length), [3, 3, 1]);
    assert.deepEqual(client.calls.flatMap((body) => body.actions.map(([, meta]) => meta.id)), ids);
    assert.deepEqual(client.calls.map((body) => body.wait), [undefined, undefined, 1]);
    assert.ok(client.calls.every((body) => body.token === "secret-lou"));
  });

  test("undo: the server's reason and logux/undo action; undone actions leave the queue", async () => {
    const client = testClient(server.url, "bob");
    const denied = await client.push({ type: "tasks/add", text: "forbidden" });
    const late = await client.push({ type: "tasks/add", text: "late" });
    const unknown = await client.push({ type: "no/such/type" });
    const fine = await client.push({ type: "tasks/add", text: "fine" });
    const totals = await client.sync();
    assert.equal(totals.processed, 1);
    assert.equal(totals.undone, 3);
    const byId = new Map(client.seen.undo.map((answer) => [answer.id, answer]));
    assert.equal(byId.get(denied.id).reason, "denied");
    assert.equal(byId.get(late.id).reason, "tooLate");
    assert.equal(byId.get(unknown.id).reason, "unknownType");
    assert.equal(byId.get(late.id).undo.type, "logux/undo");
    assert.equal(byId.get(late.id).undo.id, late.id);
    assert.deepEqual(byId.get(late.id).action, { type: "tasks/add", text: "late" });
    assert.deepEqual(client.seen.processed.map((answer) => answer.id), [fine.id]);
    assert.deepEqual(await client.pending(), []);
  });

  test("subscribe: load runs once, a filter chooses, own actions are not sent back", async () => {
    const reader = testClient(server.url, "carol");
    const writer = testClient(server.url, "dave");
    await reader.subscribe("tasks", { filter: { done: false } });
    await reader.subscribe("user/dave"); // another user's: refused
    await reader.sync();
    assert.deepEqual(appActions(reader.seen.actions).map(([action]) => action), [
      { type: "tasks/snapshot", for: "carol" },
    ]);
    assert.deepEqual(reader.calls[0].subscribe, [
      { channel: "tasks", filter: { done: false } },
      { channel: "user/dave" },
    ]);
    assert.deepEqual(reader.seen.processed.map((answer) => answer.channel), ["tasks"]);
    assert.deepEqual(reader.seen.undo.map((answer) => [answer.channel, answer.reason]), [
      ["user/dave", "denied"],
    ]);
    assert.deepEqual(await reader.subscriptions(), [
      { channel: "tasks", extra: { filter: { done: false } }, active: true },
    ]);

    const open = await writer.push({ type: "tasks/add", text: "open", done: false });
    await writer.push({ type: "tasks/add", text: "closed", done: true });
    await writer.sync();
    await reader.push({ type: "tasks/add", text: "mine", done: false });
    reader.seen.actions.length = 0;
    const totals = await reader.sync();
    assert.deepEqual(appActions(reader.seen.actions).map(([action]) => action), [
      { type: "tasks/add", text: "open", done: false },
    ]);
    const [, meta] = appActions(reader.seen.actions)[0];
    assert.equal(meta.id, open.id);
    assert.equal(meta.time, open.time);
    assert.equal(typeof meta.added, "number");
    assert.deepEqual(Object.keys(meta).sort(), ["added", "id", "time"]);
    assert.equal(reader.calls.at(-1).subscribe, undefined, "an answered subscription is not re-sent");

    // The filtered-out action is behind the cursor: nothing comes again.
    reader.seen.actions.length = 0;
    assert.deepEqual(await reader.pull(), { received: 0, more: false });
    assert.deepEqual(reader.seen.actions, []);
  });

  test("unsubscribe: answered, then the channel's actions stop", async () => {
    const reader = testClient(server.url, "erin");
    const writer = testClient(server.url, "frank");
    await reader.subscribe("tasks");
    await reader.sync();
    await writer.push({ type: "tasks/add", text: "before" });
    await writer.sync();
    await reader.sync();
    assert.deepEqual(appActions(reader.seen.actions).map(([action]) => action.text), [
      undefined, // the snapshot
      "before",
    ]);
    await reader.unsubscribe("tasks");
    await reader.sync();
    assert.deepEqual(reader.calls.at(-1).unsubscribe, [{ channel: "tasks" }]);
    assert.deepEqual(
      reader.seen.processed.map((answer) => [answer.action.type, answer.channel]),
      [["logux/subscribe", "tasks"], ["logux/unsubscribe", "tasks"]],
    );
    assert.deepEqual(await reader.subscriptions(), []);

    await writer.push({ type: "tasks/add", text: "after" });
    await writer.sync();
    reader.seen.actions.length = 0;
    await reader.sync();
    assert.deepEqual(appActions(reader.seen.actions), []);
    assert.equal(reader.calls.at(-1).unsubscribe, undefined);
  });

  test("unsubscribe while the subscribe is out: the unsubscribe still reaches the server", async () => {
    const calls = [];
    let client;
    const fetch = async (url, init) => {
      calls.push(JSON.parse(init.body));
      if (calls.length === 1) await client.unsubscribe("tasks"); // the subscribe is sent now
      return globalThis.fetch(url, init);
    };
    client = testClient(server.url, "kim", { fetch });
    await client.subscribe("tasks");
    await client.sync();
    assert.deepEqual(calls[0].subscribe, [{ channel: "tasks" }]);
    assert.deepEqual(await client.subscriptions(), []);
    await client.sync();
    assert.deepEqual(calls[1].unsubscribe, [{ channel: "tasks" }]);
    assert.equal(calls[1].subscribe, undefined);
    assert.deepEqual(
      client.seen.processed.map((answer) => answer.action.type),
      ["logux/subscribe", "logux/unsubscribe"],
    );
  });

  test("a subscription never sent is dropped by unsubscribe, nothing goes to the server", async () => {
    const client = testClient(server.url, "gina");
    await client.subscribe("tasks");
    await client.unsubscribe("tasks");
    await client.sync();
    assert.equal(client.calls[0].subscribe, undefined);
    assert.equal(client.calls[0].unsubscribe, undefined);
  });

  test("pages: `more` makes sync ask again at once, in `added` order", async () => {
    const reader = testClient(server.url, "hank", { limit: 10 });
    const writer = testClient(server.url, "ivy");
    for (let n = 0; n < 25; n += 1) await writer.push({ type: "note", to: "hank", n });
    await writer.sync();
    assert.deepEqual(await reader.pull(), { received: 10, more: true });
    const totals = await reader.sync();
    assert.equal(totals.received, 15);
    assert.equal(reader.calls.length, 3); // pages of 10 + 10 + 5
    assert.deepEqual(reader.calls.map((body) => body.limit), [10, 10, 10]);
    assert.deepEqual(
      reader.seen.actions.map(([action]) => action.n),
      Array.from({ length: 25 }, (_, n) => n),
    );
    const added = reader.seen.actions.map(([, meta]) => meta.added);
    assert.deepEqual(added, [...added].sort((a, b) => a - b));
    assert.equal(new Set(added).size, 25);
  });

  test("long-poll: an empty page waits `wait` seconds, then the same cursor", async () => {
    const client = testClient(server.url, "jack");
    await client.sync();
    const cursor = await client.cursor();
    const started = performance.now();
    assert.deepEqual(await within(10_000, client.pull({ wait: 1 })), { received: 0, more: false });
    const waited = performance.now() - started;
    assert.ok(waited >= 900, `answered after ${waited} ms`);
    assert.equal(client.calls.at(-1).wait, 1);
    assert.equal(await client.cursor(), cursor);
  });

  test("long-poll: woken by an action another client pushes", async () => {
    const reader = testClient(server.url, "kate");
    const writer = testClient(server.url, "liam");
    await reader.sync();
    const started = performance.now();
    const poll = reader.sync({ wait: 20 });
    await longPollsWaiting(server.url);
    await writer.push({ type: "note", to: "kate", n: 1 });
    await writer.sync();
    const totals = await within(10_000, poll, "the long-poll's answer");
    assert.equal(totals.received, 1);
    assert.deepEqual(reader.seen.actions.map(([action]) => action), [
      { type: "note", to: "kate", n: 1 },
    ]);
    assert.ok(performance.now() - started < 15_000);
  });

  test("an AbortSignal ends a long-poll at once, the cursor unchanged", async () => {
    const client = testClient(server.url, "pam");
    await client.sync();
    const cursor = await client.cursor();
    const controller = new AbortController();
    const started = performance.now();
    const poll = client.sync({ wait: 20, signal: controller.signal });
    await longPollsWaiting(server.url);
    controller.abort(new Error("the page was closed"));
    await assert.rejects(within(5_000, poll), /the page was closed/);
    assert.ok(performance.now() - started < 10_000);
    assert.equal(await client.cursor(), cursor);
    assert.deepEqual(client.seen.retries, []);
  });

  test("clear() forgets the queue, the cursor and the subscriptions", async () => {
    const storage = new MemoryStorage();
    const client = testClient(server.url, "quin", { storage });
    await client.subscribe("tasks");
    await client.sync();
    await client.push({ type: "tasks/add", text: "never sent" });
    await client.clear();
    assert.deepEqual(await client.pending(), []);
    assert.equal(await client.cursor(), null);
    assert.deepEqual(await client.subscriptions(), []);
    assert.deepEqual([...storage.values.keys()], []);
  });

  test("a lost response: retried with the same ids, answered the same, appended once", async () => {
    const proxy = await startProxy(server.url, ["drop"]);
    try {
      const watcher = testClient(server.url, "mia");
      await watcher.subscribe("tasks");
      await watcher.sync();
      const client = testClient(proxy.url, "noah");
      const first = await client.push({ type: "tasks/add", text: "once-1" });
      const second = await client.push({ type: "tasks/add", text: "once-2" });
      const totals = await within(10_000, client.sync());
      assert.equal(totals.processed, 2);
      assert.equal(proxy.requests.length, 2);
      assert.equal(proxy.requests[0].step, "drop");
      assert.deepEqual(proxy.requests[1].body.actions, proxy.requests[0].body.actions);
      assert.equal(client.seen.retries.length, 1);
      assert.deepEqual(client.seen.processed.map((answer) => answer.id), [first.id, second.id]);
      assert.deepEqual(await client.pending(), []);

      await watcher.sync();
      const ids = watcher.seen.actions.map(([, meta]) => meta.id);
      assert.deepEqual(ids.filter((id) => id === first.id || id === second.id), [first.id, second.id]);
    } finally {
      await proxy.close();
    }
  });

  test("vapidKey() is null when the server has no VAPID key", async () => {
    const client = testClient(server.url, "rex");
    assert.equal(await client.vapidKey(), null);
  });

  test("refused credentials: 401 is not retried, `error` has the server's reason", async () => {
    const client = testClient(server.url, "olga");
    client.token = "wrong";
    await client.push({ type: "tasks/add", text: "kept" });
    const error = await client.sync().then(
      () => assert.fail("sync should fail"),
      (failure) => failure,
    );
    assert.ok(error instanceof SyncError);
    assert.equal(error.status, 401);
    assert.equal(error.code, "wrong-credentials");
    assert.equal(client.calls.length, 1);
    assert.deepEqual(client.seen.errors, [error]);
    assert.equal(client.seen.retries.length, 0);
    assert.equal((await client.pending()).length, 1);
  });
});
