// The WebSocket client's reconnect rules and id shortening, without a logsync server: a
// WebSocket server of the `ws` package on 127.0.0.1 that closes every connection with 1013
// (the race where logsync does so is not reproducible on demand), and the meta codec.

import assert from "node:assert/strict";
import { test } from "node:test";

import { WebSocketServer } from "../../../tests/interop/js/node_modules/ws/wrapper.mjs";
import { SocketClient } from "../src/ws.js";
import { socketClient, until, WebSocket } from "../testing/socket.js";

test("close code 1013: reconnects after at least busyDelay, and stops on stop()", async () => {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.once("listening", resolve));
  /** @type {number[]} */
  const connects = [];
  server.on("connection", (socket) => {
    socket.on("message", (data) => {
      const [type] = JSON.parse(String(data));
      if (type === "connect") {
        connects.push(performance.now());
        socket.close(1013, "try again later");
      }
    });
  });
  const url = `ws://127.0.0.1:${server.address().port}/`;
  const client = socketClient(url, "busy", { busyDelay: 150, backoff: { base: 1, cap: 2 } });
  try {
    await until(client, () => connects.length >= 3, "three connects");
    const busy = client.seen.reconnects.filter((r) => r.code === 1013);
    assert.ok(busy.length >= 2);
    for (const { delay } of busy) assert.ok(delay >= 150 && delay < 300, `delay ${delay}`);
    assert.ok(connects[2] - connects[1] >= 150, `${connects[2] - connects[1]} ms apart`);
    assert.equal(client.seen.errors.length, 0);
  } finally {
    await client.stop();
    const before = connects.length;
    await new Promise((resolve) => server.close(resolve));
    assert.equal(client.state, "disconnected");
    assert.equal(connects.length, before);
  }
});

test("a 1013 close reason's wait is honoured; reconnectNow() skips it", async () => {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.once("listening", resolve));
  let connects = 0;
  server.on("connection", (socket) => {
    connects += 1;
    // logsync's words for a busy server: the wait is a Retry-After in the close reason.
    socket.close(1013, connects === 1 ? "try again later (try again in 42 s)" : "try again later");
  });
  const url = `ws://127.0.0.1:${server.address().port}/`;
  const client = socketClient(url, "hurry", { busyDelay: 60_000 });
  try {
    await until(client, () => client.seen.reconnects.length === 1, "the first reconnect delay");
    assert.equal(client.seen.reconnects[0].delay, 42_000, "the server's hint");
    client.reconnectNow();
    await until(client, () => connects === 2, "a second connection at once", 5000);
    await until(client, () => client.seen.reconnects.length === 2, "the second reconnect delay");
    assert.ok(client.seen.reconnects[1].delay >= 60_000, "no hint: at least busyDelay");
  } finally {
    await client.stop();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("metas are shortened and expanded as @logux/core does", () => {
  const client = new SocketClient({ url: "ws://127.0.0.1:1/", node: "10:me", token: "t", WebSocket });
  client.timeFix = 7;
  client.remoteNode = "server:x";
  const connection = { baseTime: 1_000_000 };
  assert.deepEqual(client._shortMeta(connection, { id: "1000050 10:me 0", time: 1000057 }),
    { id: 50, time: 50 });
  assert.deepEqual(client._shortMeta(connection, { id: "999990 10:me 3", time: 999997 }),
    { id: [-10, 3], time: -10 });
  assert.deepEqual(client._shortMeta(connection, { id: "1000001 10:other 2", time: 1000008 }),
    { id: [1, "10:other", 2], time: 1 });
  assert.deepEqual(client._expandMeta(connection, { id: 5, time: 5 }),
    { id: "1000005 server:x 0", time: 1000012 });
  assert.deepEqual(client._expandMeta(connection, { id: [5, 2], time: 6 }),
    { id: "1000005 server:x 2", time: 1000013 });
  assert.deepEqual(client._expandMeta(connection, { id: [-5, "11:you", 1], time: -5, subprotocol: 3 }),
    { id: "999995 11:you 1", time: 1000002, subprotocol: 3 });
});

test("the queue goes in batches bounded by count and bytes; push refuses an action too large", async () => {
  const client = new SocketClient({
    url: "ws://127.0.0.1:1/", node: "10:me", token: "t", WebSocket,
    syncBatch: 3, maxMessageBytes: 8192,
  });
  const small = (n) => [{ type: "t", n }, { id: `${n} 10:me 0`, time: n }];
  const big = (n) => [{ type: "t", text: "é".repeat(2000), n }, { id: `${n} 10:me 0`, time: n }];
  const sizes = (batches) => batches.map((b) => b.map(([a]) => a.n));
  assert.deepEqual(sizes(client._batches([1, 2, 3, 4, 5].map(small))), [[1, 2, 3], [4, 5]]);
  // 4000 bytes of text each (é is 2 bytes) + 1024 counted per meta: one per 8192-byte message
  assert.deepEqual(sizes(client._batches([1, 2].map(big))), [[1], [2]]);
  await assert.rejects(client.push({ type: "t", text: "x".repeat(8192) }), RangeError);
  assert.deepEqual(await client.pending(), []);
});
