// The WebSocket client against the reference @logux/server 0.14 (tests/interop/js): the same
// protocol, so the same core scenario works (token `secret`, subprotocols 2..3).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { MemoryStorage } from "../src/storage.js";
import {
  portOf, socketClient, startReferenceServer, startTcpProxy, until,
} from "../testing/socket.js";

describe("SocketClient against @logux/server 0.14", () => {
  /** @type {Awaited<ReturnType<typeof startReferenceServer>>} */
  let server;
  const started = [];
  const client = (user, options = {}) => {
    const made = socketClient(options.url ?? server.url, user, {
      token: "secret", subprotocol: 3, ...options,
    });
    started.push(made);
    return made;
  };
  before(async () => {
    server = await startReferenceServer();
  });
  after(async () => {
    await Promise.all(started.map((c) => c.stop()));
    await server?.stop();
  });

  test("push → processed, fanned out to a subscriber of the channel", async () => {
    const reader = client("20");
    await reader.subscribe("chat/1");
    await until(reader, () => reader.seen.processed.some((p) => p.channel === "chat/1"), "subscribed");
    const writer = client("21");
    const meta = await writer.push({ type: "chat/message", chat: "1", text: "hello" });
    const answer = await writer.track(meta.id);
    assert.equal(answer.id, meta.id);
    await until(reader, () => reader.seen.actions.some(([a]) => a.text === "hello"), "fan-out");
    const [, got] = reader.seen.actions.find(([a]) => a.text === "hello");
    assert.equal(got.id, meta.id, "the id survives compression both ways");
    assert.ok(Math.abs(got.time - meta.time) < 1000, `times ${got.time} vs ${meta.time}`);
    assert.equal(writer.state, "synchronized");
    assert.ok(writer.remoteNode.startsWith("server:"));
  });

  test("undo: denied and a failing process; the queue empties", async () => {
    const user = client("22");
    const denied = await user.push({ type: "denied/action" });
    const failed = await user.push({ type: "chat/message", chat: "1", text: "fail" });
    await user.sync();
    const reasons = Object.fromEntries(user.seen.undo.map((u) => [u.id, u.reason]));
    assert.deepEqual(reasons, { [denied.id]: "denied", [failed.id]: "error" });
    assert.deepEqual(await user.pending(), []);
  });

  test("subscribe runs load; the resubscription after a reconnect carries since", async () => {
    const proxy = await startTcpProxy(portOf(server.url));
    try {
      const user = client("23", { url: proxy.url });
      await user.subscribe("user/23");
      await until(user, () => user.seen.processed.length === 1, "subscribed");
      assert.deepEqual(user.seen.actions[0][0], { type: "user/name", user: "23", name: "anonymous" });
      await user.track((await user.push({ type: "CHANGE_NAME", user: "23", name: "Zoe" })).id);
      proxy.cut();
      await until(user, () => user.seen.processed.filter((p) => p.channel).length === 2, "resubscribed");
      const again = user.seen.processed.filter((p) => p.channel)[1];
      assert.equal(typeof again.action.since.id, "string");
      await until(user, () => user.seen.actions.some(([a]) => a.name === "Zoe"), "the new name");
    } finally {
      await proxy.stop();
    }
  });

  test("the offline queue is sent on connect; an action cut off in flight is resent and answered", async () => {
    const storage = new MemoryStorage();
    const node = "24:offline";
    const offline = client("24", { node, storage, start: false });
    const queued = await offline.push({ type: "counter/inc" });
    const proxy = await startTcpProxy(portOf(server.url));
    try {
      const online = client("24", { node, storage, url: proxy.url });
      await online.track(queued.id);
      assert.ok(online.seen.actions.some(([a]) => a.type === "counter/value"));
      proxy.mute(true);
      const lost = await online.push({ type: "counter/inc" });
      proxy.cut();
      proxy.mute(false);
      await online.track(lost.id);
      assert.deepEqual(await online.pending(), []);
      assert.ok(online.seen.reconnects.length >= 1);
    } finally {
      await proxy.stop();
    }
  });

  test("an old subprotocol: wrong-subprotocol, no reconnect", async () => {
    const old = client("25", { subprotocol: 1 });
    await until(old, () => old.seen.errors.length > 0 && old.state === "disconnected", "refused");
    assert.equal(old.seen.errors[0].code, "wrong-subprotocol");
    assert.deepEqual(old.seen.errors[0].body, { supported: 2, used: 1 });
    assert.equal(old.seen.reconnects.length, 0);
  });
});
