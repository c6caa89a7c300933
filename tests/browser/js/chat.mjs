/**
 * The demo chat's user stories (logsync issue 15), one per run:
 *
 *   node chat.mjs <story> <server http url>
 *
 * Run by tests/browser/test_chat.py, which starts `logsync serve` (SQLite in a temp folder) and
 * answers `ASK restart` lines on stdout by restarting it on the same port and store. Exit code 0
 * and a last line `PASS <story>` mean the story held; screenshots go to tests/browser/artifacts.
 */

import {
  ask,
  assert,
  assertEqual,
  connection,
  launch,
  openUser,
  send,
  shot,
  texts,
  until,
} from "./harness.mjs";

const [story, url] = process.argv.slice(2);

/** Seed `count` messages into `room` from user `carol` over POST /v1/sync, written 1 s apart. */
async function seed(room, count) {
  const start = Date.now() - count * 1000 - 5000;
  const actions = [];
  for (let i = 0; i < count; i += 1) {
    const time = start + i * 1000;
    actions.push([{ type: "chat/message", room, text: `m${i}` }, { id: `${time} carol:seed 0`, time }]);
  }
  const response = await fetch(`${url}/v1/sync`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ node: "carol:seed", token: "demo", actions }),
  });
  const body = await response.json();
  assertEqual(
    body.answers.map((answer) => answer.status),
    actions.map(() => "processed"),
    "the seeded messages are processed",
  );
}

const stories = {
  /** Two tabs of one browser share the client id: the tab looked at holds the connection. */
  async tabs(browser) {
    const first = await openUser(browser, url, "alice");
    const online = (page) => page.waitForFunction(
      () => document.querySelector("#connection").dataset.state === "online", null,
      { timeout: 15_000 });
    await online(first.page);
    const second = await first.context.newPage();  // the same browser profile: same client id
    await second.goto(`${url}/?user=alice`);
    await online(second);
    await until("the first tab to give way", async () =>
      (await connection(first.page)) === "open in another tab");
    await send(second, "from the second tab");
    await until("the message to be sent", () => second.$eval("#messages",
      (list) => [...list.querySelectorAll(".message")].some((m) =>
        m.textContent.includes("from the second tab") && !m.classList.contains("pending"))));
    assert(await first.page.$eval("#text", (text) => text.disabled), "the tab that gave way writes nothing");
    // Looked at again, the first tab reloads, takes the connection back, and has what was said
    // meanwhile (from IndexedDB: the server never sends a client its own actions).
    await first.page.bringToFront();
    await Promise.all([
      first.page.waitForNavigation(),
      first.page.evaluate(() => window.dispatchEvent(new Event("focus"))),
    ]);
    await first.page.waitForFunction(() => window.chat !== undefined, null, { timeout: 15_000 });
    await online(first.page);
    await until("the second tab to give way", async () =>
      (await connection(second)) === "open in another tab");
    await until("the first tab to show the message", async () =>
      (await texts(first.page)).includes("from the second tab"));
    assertEqual(first.page.errors, [], "no page errors");
  },

  /** On open I see the latest messages; scrolling up pages older ones in, without a jump. */
  async history(browser) {
    await seed("lobby", 75);
    const { page } = await openUser(browser, url, "alice");
    await page.waitForFunction(() => document.querySelectorAll("#messages .message").length === 30);
    const shown = await texts(page);
    assertEqual(shown.at(0), "m45", "the first shown is the 30th from the end");
    assertEqual(shown.at(-1), "m74", "the latest is shown last");
    const bottom = await page.$eval("#messages", (list) =>
      Math.abs(list.scrollHeight - list.clientHeight - list.scrollTop) < 2);
    assert(bottom, "the list opens scrolled to the latest message");
    await shot(page, "history-latest");
    // Where m45 is on screen before the older page lands above it.
    const topOf = (text) =>
      page.evaluate((wanted) => {
        const node = [...document.querySelectorAll("#messages .message")].find(
          (element) => element.querySelector(".text").textContent === wanted,
        );
        return node.getBoundingClientRect().top;
      }, text);
    // Scrolled to the top, m45 is where the eye is; the older page must land above it.
    await page.$eval("#messages", (list) => {
      list.scrollTop = 0;
    });
    const before = await topOf("m45");
    await page.waitForFunction(() => document.querySelectorAll("#messages .message").length === 60);
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
    const after = await topOf("m45");
    assert(before > 0, `m45 stays in view where it was (top ${before})`);
    assert(Math.abs(before - after) < 2, `no jump: ${before} then ${after}`);
    assertEqual((await texts(page)).slice(0, 2), ["m15", "m16"], "the older page is above");
    await page.$eval("#messages", (list) => {
      list.scrollTop = 0;
    });
    await page.waitForFunction(() => document.querySelectorAll("#messages .message").length === 75);
    await page.waitForFunction(() =>
      document.querySelector("#messages .older").textContent.includes("beginning"));
    assertEqual((await texts(page)).length, 75, "every message once, after paging to the start");
    await shot(page, "history-older");
    assertEqual(page.errors, [], "no page errors");
  },

  /** What I send shows at once (keyboard send); the other person gets it live. */
  async live(browser) {
    const alice = await openUser(browser, url, "alice");
    const bob = await openUser(browser, url, "bob");
    for (const { page } of [alice, bob]) {
      await page.waitForFunction(() => document.querySelector("#connection").dataset.state === "online");
    }
    // How the message first appears: pending (shown before the server's answer), never sent.
    await alice.page.evaluate(() => {
      window.firstStatus = new Promise((resolve) => {
        new MutationObserver((records, observer) => {
          for (const node of records.flatMap((record) => [...record.addedNodes])) {
            if (node.classList?.contains("message")) {
              observer.disconnect();
              resolve(node.querySelector(".status").textContent);
            }
          }
        }).observe(document.querySelector("#messages"), { childList: true });
      });
    });
    await send(alice.page, "hello bob");
    assertEqual(await alice.page.evaluate(() => window.firstStatus), "○ not sent yet", "shown at once, pending");
    // Confirmed: "✓ sent", or already "✓✓ read" if Bob was quick.
    await alice.page.waitForFunction(() =>
      /✓ sent|✓✓ read/.test(document.querySelector("#messages .message.mine.sent .status")?.textContent));
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll("#messages .message .text")].some((n) => n.textContent === "hello bob"));
    assertEqual(await alice.page.$eval("#text", (node) => node.value), "", "the composer is emptied");
    await until("both online in the presence lists", async () => {
      const names = await alice.page.$$eval("#presence li", (items) => items.map((i) => i.dataset.user));
      return names.includes("bob") && names.includes("alice");
    });
    await shot(alice.page, "live-alice");
    await shot(bob.page, "live-bob");
    assertEqual([...alice.page.errors, ...bob.page.errors], [], "no page errors");
  },

  /**
   * Offline: three messages pending, a reload while still offline keeps them (pending), back
   * online they go out by themselves and Bob gets them in the order written — around a message
   * Bob wrote meanwhile.
   */
  async offline(browser) {
    const alice = await openUser(browser, url, "alice");
    const bob = await openUser(browser, url, "bob");
    for (const { page } of [alice, bob]) {
      await page.waitForFunction(() => document.querySelector("#connection").dataset.state === "online");
    }
    // The service worker holds the page's shell, for the reload offline.
    await alice.page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    await alice.context.setOffline(true);
    await alice.page.waitForFunction(() => document.querySelector("#connection").dataset.state === "offline");
    await send(alice.page, "offline one");
    await send(alice.page, "offline two");
    await send(bob.page, "bob while alice is away");
    await bob.page.waitForFunction(() => document.querySelector(".message.mine.sent"));
    await send(alice.page, "offline three");
    const pending = () =>
      alice.page.$$eval("#messages .message.pending .text", (nodes) => nodes.map((n) => n.textContent));
    await until("three pending while offline", async () => (await pending()).length === 3);
    assertEqual(await pending(), ["offline one", "offline two", "offline three"], "pending while offline");
    await shot(alice.page, "offline-pending");
    await alice.page.reload();
    await alice.page.waitForFunction(() => window.chat !== undefined);
    await until("the pending messages after the reload", async () => (await pending()).length === 3);
    assertEqual(await pending(), ["offline one", "offline two", "offline three"], "still pending after a reload");
    assertEqual(await connection(alice.page), "offline", "still offline after the reload");
    await shot(alice.page, "offline-reloaded");
    // Every text the connection state shows from now on.
    await alice.page.evaluate(() => {
      const shown = document.querySelector("#connection");
      window.states = [shown.textContent];
      new MutationObserver(() => window.states.push(shown.textContent)).observe(shown, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await alice.context.setOffline(false);
    await alice.page.waitForFunction(() => document.querySelector("#connection").dataset.state === "online");
    const states = await alice.page.evaluate(() => window.states);
    assert(
      states.some((text) => /^catching up · [3-9] to send$/.test(text)),
      `catching up with a count is shown on the way back: ${JSON.stringify(states)}`,
    );
    await until("Alice's messages sent", async () => (await pending()).length === 0);
    const order = ["offline one", "offline two", "bob while alice is away", "offline three"];
    await until("Bob gets them in the order written", async () => {
      const shown = await texts(bob.page);
      return JSON.stringify(shown.slice(-4)) === JSON.stringify(order);
    });
    await until("Alice sees Bob's message where it was written", async () => {
      const shown = await texts(alice.page);
      return JSON.stringify(shown.slice(-4)) === JSON.stringify(order);
    });
    await shot(alice.page, "offline-back-alice");
    await shot(bob.page, "offline-back-bob");
  },

  /** Who is online shows; clicking them opens a direct conversation that reaches them unopened. */
  async presence(browser) {
    const alice = await openUser(browser, url, "alice");
    const bob = await openUser(browser, url, "bob");
    await alice.page.waitForFunction(() => document.querySelector('#presence li[data-user="bob"] button'));
    await bob.page.waitForFunction(() => document.querySelector('#presence li[data-user="alice"]'));
    await alice.page.click('#presence li[data-user="bob"] button');
    await alice.page.waitForFunction(() => document.querySelector("#title").textContent === "@ bob");
    await send(alice.page, "just between us");
    // Bob has not opened the conversation: it appears in his list, its message waiting there.
    const dm = '#rooms button:text-is("@ alice")';
    await bob.page.waitForSelector(dm);
    assert(!(await texts(bob.page)).includes("just between us"), "not shown in the lobby");
    await bob.page.click(dm);
    await until("Bob sees the direct message", async () => (await texts(bob.page)).includes("just between us"));
    // Carol is not one of the two: the server refuses her the conversation.
    const carol = await openUser(browser, url, "carol", { room: "dm~alice~bob" });
    // Online (synchronized) comes once the server has answered her subscriptions.
    await carol.page.waitForFunction(() => document.querySelector("#connection").dataset.state === "online");
    await until("Carol's subscription refused", () =>
      carol.page.evaluate(async () => !(await window.chat.client.subscriptions()).some(
        (subscription) => subscription.channel === "chat/dm~alice~bob")));
    assertEqual(await texts(carol.page), [], "Carol sees nothing of it");
    await shot(bob.page, "presence-dm-bob");
  },

  /** A read receipt and a reaction cross over. */
  async receipts(browser) {
    const alice = await openUser(browser, url, "alice");
    const bob = await openUser(browser, url, "bob");
    for (const { page } of [alice, bob]) {
      await page.waitForFunction(() => document.querySelector("#connection").dataset.state === "online");
    }
    await send(alice.page, "did you read this?");
    await alice.page.waitForFunction(() =>
      document.querySelector(".message.mine .status")?.textContent === "✓ sent" ||
      document.querySelector(".message.mine .status.read"));
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll("#messages .message .text")].some((n) => n.textContent === "did you read this?"));
    await alice.page.waitForFunction(() =>
      document.querySelector(".message.mine .status.read")?.textContent.includes("read"));
    await bob.page.click('#messages .message:not(.mine) button.react');
    await alice.page.waitForFunction(() =>
      document.querySelector(".message.mine .reactions")?.textContent === "♥ 1");
    await send(bob.page, "yes ♥");
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll("#messages .message .text")].some((n) => n.textContent === "yes ♥"));
    await shot(alice.page, "receipts-alice");
    await shot(bob.page, "receipts-bob");
    // Both users side by side (docs/chat.png in the README is one of these).
    const images = await Promise.all(
      [alice, bob].map(async ({ page }) => (await page.screenshot()).toString("base64")),
    );
    const board = await alice.context.newPage();
    await board.setViewportSize({ width: 1808, height: 640 });
    await board.setContent(
      `<body style="margin:0;display:flex;gap:8px;background:#999">${images
        .map((image) => `<img src="data:image/png;base64,${image}">`)
        .join("")}</body>`,
    );
    await shot(board, "chat-side-by-side");
  },

  /** A server restart in the middle: the page reconnects, what was said is still there. */
  async restart(browser) {
    const alice = await openUser(browser, url, "alice");
    const bob = await openUser(browser, url, "bob");
    for (const { page } of [alice, bob]) {
      await page.waitForFunction(() => document.querySelector("#connection").dataset.state === "online");
    }
    await send(alice.page, "before the restart");
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll("#messages .message .text")].some((n) => n.textContent === "before the restart"));
    await ask("stop");
    await alice.page.waitForFunction(() => document.querySelector("#connection").dataset.state === "reconnecting");
    await send(alice.page, "during the restart");
    await alice.page.waitForFunction(() => document.querySelector(".message.pending"));
    await shot(alice.page, "restart-reconnecting");
    await ask("start");
    await alice.page.waitForFunction(() => document.querySelector("#connection").dataset.state === "online", null, { timeout: 20_000 });
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll("#messages .message .text")].some((n) => n.textContent === "during the restart"), null, { timeout: 20_000 });
    // A user who was never there gets what was said before the restart from the store.
    const carol = await openUser(browser, url, "carol");
    await until("Carol sees the history", async () => {
      const shown = await texts(carol.page);
      return shown.includes("before the restart") && shown.includes("during the restart");
    });
    await shot(carol.page, "restart-carol");
  },
};

const browser = await launch();
try {
  if (!(story in stories)) throw new Error(`no story ${story}`);
  await stories[story](browser);
  console.log(`PASS ${story}`);
} finally {
  await browser.close();
}
process.exit(0);
