/**
 * Real `logsync serve` processes for the JS client's tests (test/app.py, on 127.0.0.1).
 *
 * `await startServer()` resolves once the server prints its address; `server.url` is its
 * `http://127.0.0.1:PORT`, `await server.stop()` ends it by its PID. The Python interpreter is
 * `LOGSYNC_PYTHON` (the pytest wrapper sets it), else the repository's `.venv/bin/python`.
 */

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const TEST_DIR = resolve(HERE, "../test");
export const REPO = resolve(HERE, "../../..");
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

export function python() {
  if (process.env.LOGSYNC_PYTHON) return process.env.LOGSYNC_PYTHON;
  const venv = join(REPO, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/** A fresh folder for SQLite files and FileStorage files of one test. */
export function tempDir() {
  return mkdtempSync(join(tmpdir(), "logsync-js-"));
}

/** A `sqlite:///…` store URL of a new file in a new folder. */
export function sqliteStore() {
  return `sqlite:///${join(tempDir(), "log.db")}`;
}

/**
 * @param {{ store?: string, args?: string[] }} [options] `store` defaults to a new SQLite file
 * @returns {Promise<{ url: string, store: string, output: string[], stop: () => Promise<void> }>}
 */
export function startServer({ store = sqliteStore(), args = [] } = {}) {
  const child = spawn(
    python(),
    ["-m", "logsync.cli", "serve", "app:app", "--host", "127.0.0.1", "--port", "0",
      "--store", store, ...args],
    { cwd: TEST_DIR, stdio: ["ignore", "pipe", "pipe"] },
  );
  const output = [];
  let exited = false;
  const exit = new Promise((resolve) => child.once("exit", () => {
    exited = true;
    resolve(undefined);
  }));
  const stop = async () => {
    if (exited) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await exit;
    clearTimeout(timer);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`logsync serve did not start:\n${output.join("")}`));
    }, START_TIMEOUT_MS);
    let buffered = "";
    const onData = (chunk) => {
      const text = chunk.toString();
      output.push(text);
      buffered += text;
      const match = /logsync listening on ws:\/\/([^/\s]+)\//.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve({ url: `http://${match[1]}`, store, output, stop });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    exit.then(() => {
      clearTimeout(timer);
      reject(new Error(`logsync serve exited:\n${output.join("")}`));
    });
  });
}
