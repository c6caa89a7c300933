#!/usr/bin/env node
// A Node cron job: sync once (push what an earlier run queued, pull what was missed), print each
// action received as one JSON line on stdout, and exit. The state (queue, cursor, channels) is
// kept in a JSON file between runs.
//
//   node examples/cron.mjs --url http://127.0.0.1:31337 --node 10:cron --token secret \
//     --state ./cron-state.json --subscribe tasks [--push '{"type":"ping"}'] [--wait 0]
//
// Exit code 0 when the sync went through, 1 when it failed (the reason on stderr).

import { parseArgs } from "node:util";

import { PullClient } from "../src/pull.js";
import { FileStorage } from "../src/storage-node.js";

const { values } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:31337" },
    node: { type: "string" },
    token: { type: "string", default: process.env.LOGSYNC_TOKEN },
    state: { type: "string", default: "./logsync-cron-state.json" },
    subscribe: { type: "string", multiple: true, default: [] },
    push: { type: "string", multiple: true, default: [] },
    wait: { type: "string", default: "0" },
  },
});
if (!values.node) {
  console.error("cron.mjs: --node user:client is required");
  process.exit(2);
}

const client = new PullClient({
  url: values.url,
  node: values.node,
  token: values.token,
  storage: new FileStorage(values.state),
});
client.on("action", (action, meta) => {
  console.log(JSON.stringify({ action, meta }));
});
client.on("undo", (answer) => {
  console.error(`refused: ${answer.id ?? answer.channel} (${answer.reason})`);
});
client.on("reset", ({ reason }) => {
  console.error(`the server reset the cursor (${reason}); subscribed again`);
});

try {
  for (const channel of values.subscribe) await client.subscribe(channel);
  for (const text of values.push) await client.push(JSON.parse(text));
  const totals = await client.sync({ wait: Number(values.wait) });
  console.error(
    `synced: ${totals.received} received, ${totals.processed} processed, ${totals.undone} undone`,
  );
} catch (error) {
  console.error(`sync failed: ${error.message}`);
  process.exitCode = 1;
}
