/**
 * What every story of chat.mjs uses: Debian's chromium through playwright-core (no browser
 * download), one browser context per user, waits with deadlines, screenshots, and the talk with
 * the pytest wrapper (tests/browser/test_chat.py) that owns the `logsync serve` process.
 */

import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.LOGSYNC_CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS = process.env.LOGSYNC_ARTIFACTS ?? join(import.meta.dirname, "..", "artifacts");
/** ms any one expectation may take */
export const WAIT_MS = 15_000;

const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/** A user's page at `/?user=<name>` in its own context, the chat started. */
export async function openUser(browser, url, user, { room } = {}) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  page.errors = errors;
  await page.goto(`${url}/?user=${user}${room ? `&room=${room}` : ""}`);
  await page.waitForFunction(() => window.chat !== undefined, null, { timeout: WAIT_MS });
  return { context, page };
}

/** Texts of the messages shown, in the order shown. */
export function texts(page) {
  return page.$$eval("#messages .message .text", (nodes) => nodes.map((node) => node.textContent));
}

/** Wait until `check(page)` (async) returns a truthy value; fail with `what` after WAIT_MS. */
export async function until(what, check, ms = WAIT_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function connection(page) {
  return page.$eval("#connection", (node) => node.dataset.state);
}

export async function send(page, text) {
  await page.focus("#text");
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
}

export async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** Ask the pytest wrapper for something (a server restart…) and wait for its "done" line. */
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
export async function ask(request) {
  process.stdout.write(`ASK ${request}\n`);
  const { value } = await lines.next();
  if (value !== "done") throw new Error(`the wrapper answered ${value}`);
}

export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

export function assertEqual(actual, expected, message) {
  const a = JSON.stringify(actual);
  const b = JSON.stringify(expected);
  if (a !== b) throw new Error(`${message}: ${a} != ${b}`);
}
