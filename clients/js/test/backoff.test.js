// Retries: full-jitter backoff (bounded), Retry-After honoured, what is never retried.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";

import { backoffDelay, parseRetryAfter, SyncError } from "../src/pull.js";
import { testClient, within } from "../testing/clients.js";
import { startProxy } from "../testing/proxy.js";
import { startServer } from "../testing/server.js";

test("backoffDelay is uniform in [0, min(cap, base * 2^attempt))", () => {
  const bounds = { base: 100, cap: 1000 };
  assert.equal(backoffDelay(0, bounds, () => 0), 0);
  assert.equal(backoffDelay(0, bounds, () => 0.5), 50);
  assert.equal(backoffDelay(3, bounds, () => 0.5), 400);
  assert.equal(backoffDelay(4, bounds, () => 0.5), 500); // capped at 1000
  assert.equal(backoffDelay(40, bounds, () => 0.999), 999);
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const delay = backoffDelay(attempt, bounds);
    assert.ok(delay >= 0 && delay < Math.min(1000, 100 * 2 ** attempt));
  }
});

test("parseRetryAfter: seconds (with fractions) or an HTTP date, else undefined", () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter("0.25"), 250);
  const now = Date.parse("2026-12-01T12:00:00Z");
  assert.equal(parseRetryAfter("Tue, 01 Dec 2026 12:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfter("Tue, 01 Dec 2026 11:00:00 GMT", now), 0);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter("soon"), undefined);
});

/** A port nothing listens on (bound, then closed). */
async function closedPort() {
  const socket = createServer();
  await new Promise((resolve) => socket.listen(0, "127.0.0.1", resolve));
  const { port } = /** @type {import("node:net").AddressInfo} */ (socket.address());
  await new Promise((resolve) => socket.close(resolve));
  return port;
}

describe("retries against a real server", () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer({ args: ["--max-frame-bytes", "4096"] });
  });
  after(async () => {
    await server?.stop();
  });

  test("503 + Retry-After twice: waits at least Retry-After, then goes through", async () => {
    const proxy = await startProxy(server.url, [
      { status: 503, retryAfter: "0.3" },
      { status: 503, retryAfter: "0.3" },
    ]);
    try {
      const cap = 100;
      const client = testClient(proxy.url, "ada", { backoff: { base: 10, cap } });
      const meta = await client.push({ type: "tasks/add", text: "through" });
      const totals = await within(10_000, client.sync());
      assert.equal(totals.processed, 1);
      assert.deepEqual(client.seen.processed.map((answer) => answer.id), [meta.id]);
      assert.equal(proxy.requests.length, 3);
      assert.deepEqual(client.seen.retries.map((retry) => retry.status), [503, 503]);
      for (const retry of client.seen.retries) {
        assert.ok(retry.delay >= 300 && retry.delay <= Math.max(300, cap), `delay ${retry.delay}`);
      }
      for (const index of [1, 2]) {
        const gap = proxy.requests[index].at - proxy.requests[index - 1].at;
        assert.ok(gap >= 290, `retry ${index} came after ${gap} ms`);
      }
      assert.deepEqual(proxy.requests[2].body.actions, proxy.requests[0].body.actions);
    } finally {
      await proxy.close();
    }
  });

  test("the server's own 503 (handshakes over its rate): Retry-After honoured, all get through", async () => {
    const strict = await startServer({
      args: ["--handshake-rate", "2", "--handshake-burst", "1", "--handshake-queue", "1"],
    });
    try {
      const clients = ["fay", "gus", "hal", "ivo"].map((user) => testClient(strict.url, user));
      for (const client of clients) await client.push({ type: "tasks/add", text: client.node });
      const results = await within(30_000, Promise.all(clients.map((client) => client.sync())));
      assert.ok(results.every((totals) => totals.processed === 1));
      const refused = clients.flatMap((client) => client.seen.retries);
      assert.ok(refused.length >= 1, "some request was over the rate");
      for (const retry of refused) {
        assert.equal(retry.status, 503);
        assert.ok(retry.delay >= 1000, `Retry-After is at least 1 s, waited ${retry.delay}`);
      }
    } finally {
      await strict.stop();
    }
  });

  test("5xx without Retry-After: jittered delays within min(cap, base * 2^n)", async () => {
    const failures = Array.from({ length: 5 }, () => ({ status: 500 }));
    const proxy = await startProxy(server.url, failures);
    try {
      const base = 20;
      const cap = 100;
      const client = testClient(proxy.url, "ben", { backoff: { base, cap } });
      await within(10_000, client.sync());
      assert.equal(proxy.requests.length, 6);
      const delays = client.seen.retries.map((retry) => retry.delay);
      assert.equal(delays.length, 5);
      for (const [attempt, delay] of delays.entries()) {
        assert.ok(delay >= 0 && delay < Math.min(cap, base * 2 ** attempt), `retry ${attempt}: ${delay}`);
      }
    } finally {
      await proxy.close();
    }
  });

  test("network errors: retried up to maxAttempts, then `error` and a rejection", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const client = testClient(url, "cleo", { maxAttempts: 4, backoff: { base: 5, cap: 40 } });
    await client.push({ type: "tasks/add", text: "stays" });
    const error = await within(10_000, client.sync().catch((failure) => failure));
    assert.ok(error instanceof SyncError);
    assert.equal(error.code, "retries-exhausted");
    assert.ok(error.cause instanceof Error);
    assert.equal(client.seen.retries.length, 3);
    assert.ok(client.seen.retries.every((retry, n) => retry.delay < Math.min(40, 5 * 2 ** n)));
    assert.deepEqual(client.seen.errors, [error]);
    assert.equal((await client.pending()).length, 1);
  });

  test("400 (a field out of range) is not retried", async () => {
    const client = testClient(server.url, "dora");
    const error = await client.pull({ wait: 99 }).catch((failure) => failure);
    assert.ok(error instanceof SyncError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "bad-request");
    assert.equal(client.calls.length, 1);
    assert.deepEqual(client.seen.errors, [error]);
  });

  test("413 (a body over max_frame_bytes) is not retried, the action stays queued", async () => {
    const client = testClient(server.url, "eli");
    await client.push({ type: "tasks/add", text: "x".repeat(8000) });
    const error = await client.sync().catch((failure) => failure);
    assert.ok(error instanceof SyncError);
    assert.equal(error.status, 413);
    assert.equal(error.code, "too-large");
    assert.equal(client.calls.length, 1);
    assert.equal(client.seen.retries.length, 0);
    assert.equal((await client.pending()).length, 1);
  });
});
