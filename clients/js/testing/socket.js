/**
 * Test helpers of the WebSocket client: a SocketClient of a test user recording what it is told
 * (the `ws` package of tests/interop/js injected as its WebSocket: Node 20 has none, and the
 * client itself stays dependency-free), `until` (wait for a condition an event makes true, with
 * a deadline), a TCP proxy that can cut every connection, and the reference @logux/server.
 */

import { spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import WebSocket from "../../../tests/interop/js/node_modules/ws/wrapper.mjs";
import { SocketClient } from "../src/ws.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const INTEROP = resolve(HERE, "../../../tests/interop/js");
const START_TIMEOUT_MS = 20_000;

export { WebSocket };

let clients = 0;

/**
 * A started SocketClient of user `user` (token `secret-<user>` unless `options.token`), its
 * events in `client.seen`: `actions`, `processed`, `undo`, `errors`, `states`, `reconnects`.
 * @param {string} url @param {string} user @param {Record<string, any>} [options]
 */
export function socketClient(url, user, options = {}) {
  clients += 1;
  const client = new SocketClient({
    url,
    node: options.node ?? `${user}:w${process.pid}x${clients}`,
    token: `secret-${user}`,
    WebSocket,
    backoff: { base: 20, cap: 200 },
    busyDelay: 50,
    ...options,
  });
  const seen = { actions: [], processed: [], undo: [], errors: [], states: [], reconnects: [] };
  client.on("action", (action, meta) => seen.actions.push([action, meta]));
  client.on("processed", (answer) => seen.processed.push(answer));
  client.on("undo", (answer) => seen.undo.push(answer));
  client.on("error", (error) => seen.errors.push(error));
  client.on("state", (state) => seen.states.push(state));
  client.on("reconnect", (info) => seen.reconnects.push(info));
  if (options.start !== false) client.start();
  return Object.assign(client, { seen });
}

/**
 * Resolve once `check()` is true, re-checking on every event of `client` (and each 20 ms as a
 * fallback for changes no event reports); fail after `ms`.
 * @param {SocketClient} client @param {() => boolean} check @param {string} what
 * @param {number} [ms]
 */
export function until(client, check, what, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const offs = [];
    const finish = (error) => {
      clearTimeout(timer);
      clearInterval(poll);
      for (const off of offs) off();
      if (error) reject(error);
      else resolve(undefined);
    };
    const test = () => {
      try {
        if (check()) finish();
      } catch (error) {
        finish(error);
      }
    };
    const timer = setTimeout(() => finish(new Error(`${what}: not within ${ms} ms`)), ms);
    const poll = setInterval(test, 20);
    for (const event of ["action", "processed", "undo", "state", "error", "reconnect"]) {
      offs.push(client.on(event, () => queueMicrotask(test)));
    }
    test();
  });
}

/**
 * A TCP proxy on 127.0.0.1 to `port` (a stand-in for the network and a load balancer):
 * `proxy.url` (ws://), `cut()` ends every open connection at once (a dropped network),
 * `refuse(true)` ends new connections at once (offline), `mute(true)` stops forwarding what
 * the server sends (answers lost on the way), `retarget(port)` sends new connections to
 * another server; `connections` counts the connections made.
 * @param {number} port
 */
export async function startTcpProxy(port) {
  const sockets = new Set();
    let connections = 0;
  let target = port;
  let refusing = false;
  let muting = false;
  const server = createServer((inbound) => {
    connections += 1;
    if (refusing) {
      inbound.destroy();
      return;
    }
    const outbound = connect(target, "127.0.0.1");
    sockets.add(inbound);
    sockets.add(outbound);
    inbound.pipe(outbound);
    outbound.on("data", (chunk) => {
      if (!muting) inbound.write(chunk);
    });
    const end = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on("error", end).on("close", end);
    outbound.on("error", end).on("close", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `ws://127.0.0.1:${address.port}/`,
    get connections() {
      return connections;
    },
    cut() {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    /** @param {boolean} on */
    refuse(on) {
      refusing = on;
    },
    /** @param {boolean} on */
    mute(on) {
      muting = on;
    },
    /** @param {number} next */
    retarget(next) {
      target = next;
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The port in a `http://127.0.0.1:PORT` URL. @param {string} url */
export function portOf(url) {
  return Number(new URL(url).port);
}

/**
 * The reference @logux/server 0.14 (tests/interop/js/reference-server.mjs) on a free port:
 * `{ url, stop }`. Its token is `secret` for every user.
 */
export async function startReferenceServer() {
  const probe = createServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = /** @type {import("node:net").AddressInfo} */ (probe.address()).port;
  await new Promise((resolve) => probe.close(resolve));
  const child = spawn(process.execPath, ["reference-server.mjs", String(port)], {
    cwd: INTEROP,
    env: { ...process.env, LOGUX_QUIET: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = [];
  let exited = false;
  const exit = new Promise((resolve) => child.once("exit", () => {
    exited = true;
    resolve(undefined);
  }));
  const stop = async () => {
    if (exited) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exit;
    clearTimeout(timer);
  };
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`@logux/server did not start:\n${output.join("")}`));
    }, START_TIMEOUT_MS);
    const onData = (chunk) => {
      output.push(chunk.toString());
      if (/listening \d+/.test(output.join(""))) {
        clearTimeout(timer);
        resolve(undefined);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    exit.then(() => {
      clearTimeout(timer);
      reject(new Error(`@logux/server exited:\n${output.join("")}`));
    });
  });
  return { url: `ws://127.0.0.1:${port}/`, output, stop };
}
