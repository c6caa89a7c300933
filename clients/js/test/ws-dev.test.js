// The WebSocket client against `logsync serve --env development`: the server's `headers` and
// `debug` messages reach the client (`remoteHeaders`, the `debug` event).

import assert from "node:assert/strict";
import { test } from "node:test";

import { startServer } from "../testing/server.js";
import { socketClient, until } from "../testing/socket.js";

test("development mode: headers kept, debug emitted, unknown type undone", async () => {
  const server = await startServer({ args: ["--env", "development"] });
  const client = socketClient(server.url, "dev");
  /** @type {string[]} */
  const debug = [];
  client.on("debug", (text) => debug.push(text));
  try {
    const meta = await client.push({ type: "no/such/type" });
    await assert.rejects(client.track(meta.id), (error) => error.reason === "unknownType");
    await until(client, () => debug.length > 0, "a debug message");
    assert.match(debug[0], /unknown type no\/such\/type/);
    assert.deepEqual(client.remoteHeaders, { env: "development" });
  } finally {
    await client.stop();
    await server.stop();
  }
});
