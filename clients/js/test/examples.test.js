// examples/cron.mjs against a real server: it syncs once, prints what it got, keeps its state.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { testClient } from "../testing/clients.js";
import { startServer, TEST_DIR, tempDir } from "../testing/server.js";

const run = promisify(execFile);
const CRON = resolve(TEST_DIR, "../examples/cron.mjs");

describe("examples/cron.mjs", () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  /** @param {string[]} args */
  function cron(args) {
    return run(process.execPath, [CRON, "--url", server.url, ...args], { timeout: 20_000 });
  }

  test("prints each action as a JSON line, and only the new ones next time", async () => {
    const state = join(tempDir(), "cron.json");
    const common = ["--node", "vera:cron", "--token", "secret-vera", "--state", state];
    const first = await cron([...common, "--subscribe", "tasks"]);
    const lines = first.stdout.trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(lines.map(({ action }) => action), [{ type: "tasks/snapshot", for: "vera" }]);
    assert.match(first.stderr, /synced: 1 received/);

    const writer = testClient(server.url, "walt");
    await writer.push({ type: "tasks/add", text: "for the cron job" });
    await writer.sync();
    const second = await cron([...common, "--push", '{"type":"note","to":"walt"}']);
    const again = second.stdout.trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(again.map(({ action }) => action.text), ["for the cron job"]);
    assert.match(second.stderr, /1 processed/);

    await writer.sync();
    assert.deepEqual(writer.seen.actions.map(([action]) => action), [{ type: "note", to: "walt" }]);
  });

  test("exits 1 with the reason when the server refuses it", async () => {
    const state = join(tempDir(), "cron.json");
    const failed = await cron(["--node", "xena:cron", "--token", "nope", "--state", state]).then(
      () => assert.fail("cron.mjs should fail"),
      (error) => error,
    );
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /sync failed: 401 wrong-credentials/);
  });
});
