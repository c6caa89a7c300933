// What survives a restart of the client (FileStorage) and of the server (409 reset).

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { FileStorage } from "../src/storage-node.js";
import { testClient } from "../testing/clients.js";
import { startServer, tempDir } from "../testing/server.js";

describe("restarts", () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test("the queue survives a new PullClient on the same FileStorage", async () => {
    const path = join(tempDir(), "state.json");
    const node = "pia:queue";
    const first = testClient(server.url, "pia", { node, storage: new FileStorage(path) });
    const one = await first.push({ type: "tasks/add", text: "q1" });
    const two = await first.push({ type: "tasks/add", text: "q2" });
    // Durable once push resolved: it is in the file.
    const onDisk = JSON.parse(await readFile(path, "utf8"));
    assert.deepEqual(onDisk[`logsync:${node}:queue`].actions.map(([, m]) => m.id), [one.id, two.id]);

    const second = testClient(server.url, "pia", { node, storage: new FileStorage(path) });
    assert.deepEqual((await second.pending()).map(([, meta]) => meta.id), [one.id, two.id]);
    const three = await second.push({ type: "tasks/add", text: "q3" });
    assert.notEqual(three.id, two.id);
    await second.sync();
    assert.deepEqual(second.seen.processed.map((a) => a.id), [one.id, two.id, three.id]);
    const third = testClient(server.url, "pia", { node, storage: new FileStorage(path) });
    assert.deepEqual(await third.pending(), []);
  });

  test("the cursor and the subscriptions survive: nothing twice, nothing missed", async () => {
    const path = join(tempDir(), "state.json");
    const node = "quinn:cursor";
    const writer = testClient(server.url, "rosa");
    const first = testClient(server.url, "quinn", { node, storage: new FileStorage(path) });
    await first.subscribe("tasks");
    await first.sync();
    await writer.push({ type: "tasks/add", text: "seen-before" });
    await writer.sync();
    await first.sync();
    assert.deepEqual(first.seen.actions.map(([a]) => a.text ?? a.type), ["tasks/snapshot", "seen-before"]);

    await writer.push({ type: "tasks/add", text: "while-away" });
    await writer.sync();
    const second = testClient(server.url, "quinn", { node, storage: new FileStorage(path) });
    assert.deepEqual(await second.subscriptions(), [{ channel: "tasks", extra: {}, active: true }]);
    assert.equal(await second.cursor(), await first.cursor());
    await second.sync();
    assert.deepEqual(second.seen.actions.map(([a]) => a.text), ["while-away"]);
    assert.equal(second.calls[0].subscribe, undefined);
  });

  test("the cursor is saved only once the page was handled", async () => {
    const storage = new FileStorage(join(tempDir(), "state.json"));
    const node = "sam:handled";
    const writer = testClient(server.url, "tom");
    const client = testClient(server.url, "sam", { node, storage });
    await client.sync();
    const cursor = await client.cursor();
    await writer.push({ type: "note", to: "sam", n: 7 });
    await writer.sync();
    const unbind = client.on("action", () => {
      throw new Error("the app could not store it");
    });
    await assert.rejects(client.sync(), /could not store it/);
    assert.equal(await client.cursor(), cursor);
    assert.equal(await storage.get(`logsync:${node}:cursor`), cursor);
    unbind();
    client.seen.actions.length = 0;
    await client.sync();
    assert.deepEqual(client.seen.actions.map(([a]) => a.n), [7]);
    assert.notEqual(await client.cursor(), cursor);
  });

  test("409 reset (a new log): fresh cursor, channels subscribed again without since", async () => {
    const dir = tempDir();
    const storage = new FileStorage(join(dir, "state.json"));
    const node = "uma:reset";
    const old = await startServer();
    const fresh = server; // another SQLite file: another epoch
    try {
      const before = testClient(old.url, "uma", { node, storage });
      await before.subscribe("tasks", { filter: { done: false } });
      await before.push({ type: "note", to: "uma", n: 1 });
      await before.sync();
      const oldCursor = await before.cursor();
      assert.ok(oldCursor);
      await old.stop();

      const client = testClient(fresh.url, "uma", { node, storage });
      await client.push({ type: "tasks/add", text: "after-reset" });
      const totals = await client.sync();
      assert.equal(totals.resets, 1);
      assert.equal(client.seen.resets.length, 1);
      const [reset] = client.seen.resets;
      assert.equal(typeof reset.reason, "string");
      assert.deepEqual(reset.resubscribe, ["tasks"]);
      // The refused request, then the same one with the fresh cursor and the subscription again.
      assert.equal(client.calls.length, 2);
      assert.equal(client.calls[0].cursor, oldCursor);
      assert.equal(client.calls[1].cursor, reset.cursor);
      assert.deepEqual(client.calls[1].subscribe, [{ channel: "tasks", filter: { done: false } }]);
      assert.deepEqual(client.calls[1].actions, client.calls[0].actions);
      assert.deepEqual(client.seen.actions.map(([a]) => a.type), ["tasks/snapshot"]);
      assert.equal(totals.processed, 1);
      assert.notEqual(await client.cursor(), oldCursor);
      assert.deepEqual(await client.subscriptions(), [
        { channel: "tasks", extra: { filter: { done: false } }, active: true },
      ]);
    } finally {
      await old.stop();
    }
  });
});
