// The WebSocket client (src/ws.js) against a real `logsync serve` of test/app.py.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { createClient } from "../src/client.js";
import { PullClient } from "../src/pull.js";
import { FileStorage } from "../src/storage-node.js";
import { SocketClient } from "../src/ws.js";
import { startServer, tempDir } from "../testing/server.js";
import {
  portOf, socketClient, startTcpProxy, until, WebSocket,
} from "../testing/socket.js";

/** The `text`s of the tasks/add actions a client received. */
function texts(client) {
  return client.seen.actions.filter(([a]) => a.type === "tasks/add").map(([a]) => a.text);
}

describe("SocketClient against logsync serve", () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  /** @type {SocketClient[]} */
  const started = [];
  const client = (user, options = {}) => {
    const made = socketClient(options.url ?? server.url, user, options);
    started.push(made);
    return made;
  };
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await Promise.all(started.map((c) => c.stop()));
    await server?.stop();
  });

  test("createClient picks the transport by URL", () => {
    const options = { node: "u:c", token: "t", WebSocket };
    assert.ok(createClient({ ...options, url: "ws://127.0.0.1:1/" }) instanceof SocketClient);
    assert.ok(createClient({ ...options, url: "wss://example.com/" }) instanceof SocketClient);
    assert.ok(createClient({ ...options, url: "http://127.0.0.1:1" }) instanceof PullClient);
    assert.throws(() => createClient({ ...options, url: "ftp://x" }), TypeError);
    assert.throws(() => new SocketClient({ ...options, url: "ws://x/", WebSocket: undefined }), TypeError);
  });

  test("push → processed; the state goes connecting → sending → synchronized", async () => {
    const alice = client("alice");
    const meta = await alice.push({ type: "tasks/add", text: "one" });
    const answer = await alice.track(meta.id);
    assert.equal(answer.id, meta.id);
    assert.deepEqual(answer.action, { type: "tasks/add", text: "one" });
    await alice.sync();
    assert.deepEqual(await alice.pending(), []);
    await until(alice, () => alice.state === "synchronized", "synchronized");
    const states = alice.seen.states.map((s) => s.state);
    assert.equal(states[0], "connecting");
    assert.ok(states.indexOf("sending") > 0, states.join());
    assert.equal(states.at(-1), "synchronized");
    assert.equal(alice.seen.states.at(-1).pending, 0);
    assert.equal(alice.seen.processed.length, 1);
    assert.ok(alice.remoteNode.startsWith("server:"), alice.remoteNode);
    assert.ok(Math.abs(alice.timeFix) < 1000, `time fix ${alice.timeFix}`);
  });

  test("undo: a denied action and an Undo with a reason leave the queue; track rejects", async () => {
    const bob = client("bob");
    const denied = await bob.push({ type: "tasks/add", text: "forbidden" });
    const late = await bob.push({ type: "tasks/add", text: "late" });
    const ok = await bob.push({ type: "tasks/add", text: "fine" });
    await assert.rejects(bob.track(denied.id), (error) => error.code === "undo" && error.reason === "denied");
    await bob.sync();
    const reasons = Object.fromEntries(bob.seen.undo.map((u) => [u.id, u.reason]));
    assert.deepEqual(reasons, { [denied.id]: "denied", [late.id]: "tooLate" });
    assert.equal(bob.seen.undo.find((u) => u.id === late.id).undo.type, "logux/undo");
    assert.deepEqual(bob.seen.processed.map((p) => p.id), [ok.id]);
    assert.deepEqual(await bob.pending(), []);
  });

  test("a refused subscription is undone and forgotten; a token function is awaited", async () => {
    const pat = client("pat", { token: async () => "secret-pat" });
    await pat.subscribe("user/someone-else");
    await until(pat, () => pat.seen.undo.length === 1, "the undo");
    assert.equal(pat.seen.undo[0].channel, "user/someone-else");
    assert.equal(pat.seen.undo[0].reason, "denied");
    assert.deepEqual(await pat.subscriptions(), []);
    const meta = await pat.push({ type: "tasks/add", text: "late-track" });
    await pat.sync();
    assert.equal((await pat.track(meta.id)).id, meta.id, "an answer already in settles track()");
  });

  test("a second connection of the same client id: the first is a zombie and stops", async () => {
    const node = "quentin:same";
    const first = client("quentin", { node });
    await until(first, () => first.state === "synchronized", "first connected");
    const second = client("quentin", { node });
    await until(first, () => first.seen.errors.some((e) => e.code === "zombie"), "zombie");
    assert.equal(first.state, "disconnected");
    assert.equal(first.seen.reconnects.length, 0);
    const meta = await second.push({ type: "tasks/add", text: "survivor" });
    assert.equal((await second.track(meta.id)).id, meta.id);
    assert.equal(second.seen.errors.length, 0);
  });

  test("wrong credentials: an error, no reconnect", async () => {
    const mallory = client("mallory", { token: "nope" });
    await until(mallory, () => mallory.seen.errors.length > 0 && mallory.state === "disconnected",
      "wrong-credentials");
    assert.equal(mallory.seen.errors[0].code, "wrong-credentials");
    assert.equal(mallory.seen.reconnects.length, 0);
    await assert.rejects(mallory.sync().then(() => mallory.push({ type: "x" })).then(() => mallory.sync()),
      (error) => error.code === "stopped");
  });

  test("subscribe runs the channel's load; others' actions arrive live", async () => {
    const carol = client("carol");
    const dave = client("dave");
    await carol.subscribe("tasks");
    await until(carol, () => carol.seen.processed.some((p) => p.channel === "tasks"), "subscribed");
    assert.deepEqual(carol.seen.actions[0][0], { type: "tasks/snapshot", for: "carol" });
    const [{ since }] = await carol.subscriptions();
    assert.equal(typeof since.id, "string");
    await dave.push({ type: "tasks/add", text: "live" });
    await until(carol, () => texts(carol).includes("live"), "the live action");
    await carol.unsubscribe("tasks");
    await until(carol, () => carol.seen.processed.filter((p) => p.channel === "tasks").length === 2,
      "unsubscribed");
    assert.deepEqual(await carol.subscriptions(), []);
    // Nothing of the channel after the unsubscribe: an action to carol's user, sent after one to
    // the channel, arrives alone.
    await dave.track((await dave.push({ type: "tasks/add", text: "after-unsubscribe" })).id);
    await dave.track((await dave.push({ type: "note", to: "carol", n: 1 })).id);
    await until(carol, () => carol.seen.actions.some(([a]) => a.type === "note"), "the note");
    assert.equal(texts(carol).includes("after-unsubscribe"), false);
  });

  test("the offline queue survives a new client on the same FileStorage", async () => {
    const path = join(tempDir(), "state.json");
    const node = "erin:queue";
    const offline = client("erin", { node, storage: new FileStorage(path), start: false });
    const one = await offline.push({ type: "tasks/add", text: "q1" });
    const two = await offline.push({ type: "tasks/add", text: "q2" });
    assert.equal(offline.state, "disconnected");
    const onDisk = JSON.parse(await readFile(path, "utf8"));
    assert.deepEqual(onDisk[`logsync:${node}:queue`].actions.map(([, m]) => m.id), [one.id, two.id]);

    const online = client("erin", { node, storage: new FileStorage(path) });
    await online.sync();
    assert.deepEqual(online.seen.processed.map((p) => p.id), [one.id, two.id]);
    const third = client("erin", { node, storage: new FileStorage(path), start: false });
    assert.deepEqual(await third.pending(), []);
  });

  test("switching transports keeps the queue: what a PullClient queued, a SocketClient sends", async () => {
    const storage = new FileStorage(join(tempDir(), "state.json"));
    const node = "rita:switch";
    const pull = createClient({ url: server.url, node, token: "secret-rita", storage });
    const queued = await pull.push({ type: "tasks/add", text: "queued-over-http" });
    const socket = client("rita", { node, storage: new FileStorage(storage.path) });
    assert.deepEqual((await socket.pending()).map(([, meta]) => meta.id), [queued.id]);
    assert.equal((await socket.track(queued.id)).id, queued.id);
    const next = await socket.push({ type: "tasks/add", text: "then-over-ws" });
    // The id sequence continues from the saved queue: never the same id twice.
    assert.ok(Number(next.id.split(" ")[0]) >= Number(queued.id.split(" ")[0]));
    assert.notEqual(next.id, queued.id);
  });

  test("an action whose answer was lost is resent after the reconnect, and processed once", async () => {
    const proxy = await startTcpProxy(portOf(server.url));
    try {
      const watcher = client("gwen");
      await watcher.subscribe("tasks");
      await until(watcher, () => watcher.seen.processed.length === 1, "watcher subscribed");
      const frank = client("frank", { url: proxy.url });
      await until(frank, () => frank.state === "synchronized", "frank connected");
      proxy.mute(true);
      const meta = await frank.push({ type: "tasks/add", text: "once" });
      await until(watcher, () => texts(watcher).includes("once"), "the server got it");
      assert.equal((await frank.pending()).length, 1);
      proxy.mute(false);
      proxy.cut();
      const answer = await frank.track(meta.id);
      assert.equal(answer.id, meta.id);
      assert.ok(frank.seen.reconnects.length >= 1);
      assert.ok(proxy.connections >= 2);
      // A later action from the same client comes after it: the duplicate was dropped before.
      await frank.push({ type: "tasks/add", text: "after" });
      await until(watcher, () => texts(watcher).includes("after"), "the next action");
      assert.deepEqual(texts(watcher).filter((t) => t === "once" || t === "after"), ["once", "after"]);
      assert.equal(frank.seen.processed.filter((p) => p.id === meta.id).length, 1);
    } finally {
      await proxy.stop();
    }
  });

  test("a resubscription resumes from `since`: nothing missed, nothing twice, no second load", async () => {
    const proxy = await startTcpProxy(portOf(server.url));
    try {
      const writer = client("ivan");
      const path = join(tempDir(), "state.json");
      const heidi = client("heidi", { url: proxy.url, storage: new FileStorage(path) });
      await heidi.subscribe("tasks");
      await until(heidi, () => heidi.seen.processed.length === 1, "subscribed");
      await writer.push({ type: "tasks/add", text: "r-before" });
      await until(heidi, () => texts(heidi).includes("r-before"), "r-before");

      proxy.refuse(true);
      proxy.cut();
      await until(heidi, () => heidi.state === "disconnected", "offline");
      for (const text of ["r-away-1", "r-away-2", "r-away-3"]) {
        await writer.track((await writer.push({ type: "tasks/add", text })).id);
      }
      proxy.refuse(false);
      await until(heidi, () => texts(heidi).includes("r-away-3"), "the missed actions");
      await writer.track((await writer.push({ type: "tasks/add", text: "r-after" })).id);
      await until(heidi, () => texts(heidi).includes("r-after"), "r-after");
      const mine = texts(heidi).filter((t) => t.startsWith("r-"));
      assert.deepEqual(mine, ["r-before", "r-away-1", "r-away-2", "r-away-3", "r-after"]);
      const snapshots = heidi.seen.actions.filter(([a]) => a.type === "tasks/snapshot");
      assert.equal(snapshots.length, 1, "load ran once: the resubscription resumed");
      // its `processed` waits for the subscription's durable status, which live actions after
      // it do not: it may come after `r-after`
      const subscribes = () => heidi.seen.processed.filter((p) => p.channel === "tasks");
      await until(heidi, () => subscribes().length === 2, "the resubscription processed");
      assert.ok(subscribes()[1].action.since?.id, "the resubscribe carried since");
    } finally {
      await proxy.stop();
    }
  });

  test("a listener that throws: no `synced`, the action comes again after the reconnect", async () => {
    const writer = client("lena");
    const path = join(tempDir(), "state.json");
    let failures = 1;
    const kim = client("kim", { storage: new FileStorage(path), start: false });
    const handled = [];
    kim.on("action", (action) => {
      if (action.text === "boom" && failures > 0) {
        failures -= 1;
        throw new Error("listener failed");
      }
      handled.push(action.text ?? action.type);
    });
    kim.start();
    await kim.subscribe("tasks");
    await until(kim, () => kim.seen.processed.length === 1, "subscribed");
    const synced = await kim.synced();
    await writer.track((await writer.push({ type: "tasks/add", text: "boom" })).id);
    await until(kim, () => handled.includes("boom"), "the action handled on its second delivery");
    assert.equal(kim.seen.errors[0].code, "listener");
    assert.ok(kim.seen.reconnects.length >= 1);
    assert.deepEqual(handled.filter((t) => t === "boom"), ["boom"]);
    assert.ok((await kim.synced()) > synced);
  });

  test("no pong within `timeout`: error timeout, then a new connection", async () => {
    const proxy = await startTcpProxy(portOf(server.url));
    try {
      const liam = client("liam", { url: proxy.url, ping: 100, timeout: 300 });
      await until(liam, () => liam.state === "synchronized", "connected");
      proxy.mute(true);
      await until(liam, () => liam.seen.errors.some((e) => e.code === "timeout"), "timeout");
      assert.ok(liam.seen.reconnects.length >= 1);
      proxy.mute(false);
      const meta = await liam.push({ type: "tasks/add", text: "after-timeout" });
      assert.equal((await liam.track(meta.id)).id, meta.id);
    } finally {
      await proxy.stop();
    }
  });

  test("subscriptions and `synced` survive a new client on the same FileStorage", async () => {
    const writer = client("nina");
    const path = join(tempDir(), "state.json");
    const node = "omar:resume";
    const first = client("omar", { node, storage: new FileStorage(path) });
    await first.subscribe("tasks");
    await until(first, () => first.seen.processed.length === 1, "subscribed");
    await writer.track((await writer.push({ type: "tasks/add", text: "s-seen" })).id);
    await until(first, () => texts(first).includes("s-seen"), "s-seen");
    await first.stop();
    await writer.track((await writer.push({ type: "tasks/add", text: "s-missed" })).id);

    const second = client("omar", { node, storage: new FileStorage(path) });
    const [saved] = await second.subscriptions();
    assert.equal(saved.channel, "tasks");
    assert.equal(typeof saved.since.id, "string");
    assert.equal(await second.synced(), await first.synced());
    await until(second, () => texts(second).includes("s-missed"), "s-missed");
    await writer.track((await writer.push({ type: "tasks/add", text: "s-later" })).id);
    await until(second, () => texts(second).includes("s-later"), "s-later");
    assert.deepEqual(texts(second).filter((t) => t.startsWith("s-")), ["s-missed", "s-later"]);
    assert.equal(second.seen.actions.filter(([a]) => a.type === "tasks/snapshot").length, 0);
  });
});

describe("SocketClient across a server restart", () => {
  test("reconnects with backoff and sends what was queued meanwhile", async () => {
    const store = `sqlite:///${join(tempDir(), "log.db")}`;
    let server = await startServer({ store });
    const proxy = await startTcpProxy(portOf(server.url));
    const judy = socketClient(proxy.url, "judy", { backoff: { base: 20, cap: 100 } });
    let writer;
    try {
      await judy.subscribe("tasks");
      const first = await judy.push({ type: "tasks/add", text: "before" });
      await judy.track(first.id);
      await until(judy, () => judy.seen.processed.some((p) => p.channel === "tasks"), "subscribed");
      await server.stop();
      await until(judy, () => judy.seen.reconnects.length >= 3, "reconnect attempts");
      const delays = judy.seen.reconnects.map((r) => r.delay);
      assert.ok(delays.every((d, n) => d >= 0 && d < Math.min(100, 20 * 2 ** n)), delays.join());
      const queued = await judy.push({ type: "tasks/add", text: "meanwhile" });
      assert.equal(judy.state === "synchronized", false);
      server = await startServer({ store });
      proxy.retarget(portOf(server.url));
      const answer = await judy.track(queued.id);
      assert.equal(answer.id, queued.id);
      await until(judy, () => judy.state === "synchronized", "synchronized again");
      assert.equal(judy.seen.states.at(-1).pending, 0);
      // The resubscription resumed on the restarted server (same log): live actions, no new load.
      writer = socketClient(server.url, "kurt");
      await writer.track((await writer.push({ type: "tasks/add", text: "restarted" })).id);
      await until(judy, () => texts(judy).includes("restarted"), "an action after the restart");
      assert.equal(judy.seen.actions.filter(([a]) => a.type === "tasks/snapshot").length, 1);
      assert.deepEqual(texts(judy).filter((t) => t === "restarted"), ["restarted"]);
    } finally {
      await writer?.stop();
      await judy.stop();
      await proxy.stop();
      await server.stop();
    }
  });
});
