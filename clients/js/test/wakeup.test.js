// Wake-ups end to end against a real server: a webhook, and a Web Push subscription whose
// message a local push service receives and decrypts (RFC 8291) as a service worker would get it;
// on each, the woken client syncs and gets what landed for it.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createECDH, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { appActions, testClient, within } from "../testing/clients.js";
import { python, REPO, startServer, tempDir } from "../testing/server.js";

const run = promisify(execFile);

/** An HTTP server on 127.0.0.1 recording each request; `next()` resolves with the next one. */
async function startReceiver() {
  const received = [];
  const waiting = [];
  const server = createServer(async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const hit = { url: request.url, headers: request.headers, body: Buffer.concat(chunks) };
    response.writeHead(201).end();
    const waiter = waiting.shift();
    if (waiter) waiter(hit);
    else received.push(hit);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    next: () =>
      received.length > 0
        ? Promise.resolve(received.shift())
        : new Promise((resolve) => waiting.push(resolve)),
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

const b64url = (buffer) => Buffer.from(buffer).toString("base64url");

/** A browser's side of a push subscription: its P-256 key pair and auth secret. */
function browserKeys() {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  return { ecdh, auth: randomBytes(16) };
}

/** Decrypt an RFC 8291 (aes128gcm, one record) Web Push message body. */
function decryptPush(body, { ecdh, auth }) {
  const salt = body.subarray(0, 16);
  const idLength = body[20];
  const senderKey = body.subarray(21, 21 + idLength);
  const record = body.subarray(21 + idLength);
  const shared = ecdh.computeSecret(senderKey);
  const keyInfo = Buffer.concat([
    Buffer.from("WebPush: info\0"),
    ecdh.getPublicKey(),
    senderKey,
  ]);
  const ikm = Buffer.from(hkdfSync("sha256", shared, auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, "Content-Encoding: aes128gcm\0", 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, "Content-Encoding: nonce\0", 12));
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  let end = padded.length - 1;
  while (padded[end] === 0) end -= 1;
  assert.equal(padded[end], 2, "the last record's padding delimiter");
  return JSON.parse(padded.subarray(0, end).toString("utf8"));
}

describe("wake-ups", () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  let publicKey;
  before(async () => {
    const pem = join(tempDir(), "vapid.pem");
    const made = await run(python(), ["-m", "logsync.cli", "vapid-keys", "--out", pem], {
      cwd: REPO,
    });
    publicKey = /applicationServerKey (\S+)/.exec(made.stdout + made.stderr)[1];
    server = await startServer({
      args: ["--vapid-private-key", pem, "--wakeup-presence-ms", "100", "--wakeup-interval-ms", "100"],
    });
  });
  after(async () => {
    await server?.stop();
  });

  test("a webhook is told to wake the client, which then syncs what landed", async () => {
    const hook = await startReceiver();
    try {
      const client = testClient(server.url, "yan");
      const writer = testClient(server.url, "abe");
      await client.sync();
      const id = await client.registerWakeup({ webhook: { url: `${hook.url}/wake` } });
      assert.equal(await client.registerWakeup({ webhook: { url: `${hook.url}/wake` } }), id);
      assert.deepEqual(await client.wakeups(), [{ id, kind: "webhook", endpoint: `${hook.url}/wake` }]);

      await writer.push({ type: "note", to: "yan", n: 1 });
      await writer.sync();
      const hit = await within(10_000, hook.next(), "the webhook");
      assert.equal(hit.url, "/wake");
      const told = JSON.parse(hit.body.toString("utf8"));
      assert.equal(told.node, client.node);
      assert.equal(told.client, client.node);
      await client.sync();
      assert.deepEqual(appActions(client.seen.actions).map(([action]) => action), [
        { type: "note", to: "yan", n: 1 },
      ]);

      await client.removeWakeup(id);
      assert.deepEqual(await client.wakeups(), []);
    } finally {
      await hook.close();
    }
  });

  test("Web Push: the key from /v1/vapid, a content-free logsync/wake, then a sync", async () => {
    const pushService = await startReceiver();
    try {
      const client = testClient(server.url, "zoe");
      const writer = testClient(server.url, "bea");
      assert.equal(await client.vapidKey(), publicKey);
      await client.subscribe("tasks");
      await client.sync();
      const keys = browserKeys();
      const subscription = {
        endpoint: `${pushService.url}/push/zoe`,
        expirationTime: null,
        keys: { p256dh: b64url(keys.ecdh.getPublicKey()), auth: b64url(keys.auth) },
      };
      const id = await client.registerWakeup({ webpush: subscription });
      assert.deepEqual(await client.wakeups(), [
        { id, kind: "webpush", endpoint: subscription.endpoint },
      ]);

      await writer.push({ type: "tasks/add", text: "wake zoe" });
      await writer.sync();
      const push = await within(10_000, pushService.next(), "the push message");
      assert.equal(push.url, "/push/zoe");
      assert.equal(push.headers["content-encoding"], "aes128gcm");
      assert.equal(push.headers.topic, "logsync");
      assert.ok(Number(push.headers.ttl) >= 0);
      assert.match(push.headers.authorization, new RegExp(`^vapid t=\\S+, ?k=${publicKey}$`));
      assert.deepEqual(decryptPush(push.body, keys), { type: "logsync/wake" });

      await client.sync();
      assert.deepEqual(appActions(client.seen.actions).map(([action]) => action.text), [
        undefined, // the tasks/snapshot of the subscription
        "wake zoe",
      ]);
    } finally {
      await pushService.close();
    }
  });
});
