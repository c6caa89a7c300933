// A service worker that keeps a pull client in sync, woken by Web Push.
//
// Register it as a module worker from the page, then tell it who the user is:
//
//   const registration = await navigator.serviceWorker.register("/service-worker.js", { type: "module" });
//   await navigator.serviceWorker.ready;
//   registration.active.postMessage({ type: "logsync/login", node: "10:phone", token });
//
// On "logsync/login" it saves the credentials, subscribes to Web Push with the server's VAPID key
// (GET /v1/vapid) and registers the subscription as this client's wake-up (POST /v1/wakeups).
// On each push (payload {"type":"logsync/wake"}: "pull now", never data) it runs client.sync()
// inside event.waitUntil, so the browser keeps the worker alive until the sync is done.

import { PullClient } from "../src/pull.js";
import { IndexedDBStorage } from "../src/storage-indexeddb.js";

const SERVER = "https://sync.example.com"; // the logsync server's base URL
const CHANNELS = ["tasks"]; // what this app subscribes to

const storage = new IndexedDBStorage({ database: "logsync" });
/** @type {Promise<PullClient | null> | undefined} */
let clientPromise;

async function client() {
  clientPromise ??= (async () => {
    const login = await storage.get("login");
    if (!login) return null;
    const pull = new PullClient({ url: SERVER, node: login.node, token: login.token, storage });
    pull.on("action", async (action, meta) => {
      // Hand each action to the open pages; keep what the app needs in IndexedDB here too.
      for (const page of await self.clients.matchAll({ type: "window" })) {
        page.postMessage({ type: "logsync/action", action, meta });
      }
    });
    return pull;
  })();
  return clientPromise;
}

/** Syncs once and shows a notification when something arrived (Chrome wants one per push). */
async function syncNow() {
  const pull = await client();
  if (!pull) return;
  const { received } = await pull.sync();
  if (received > 0) {
    await self.registration.showNotification("New activity", {
      body: `${received} update${received === 1 ? "" : "s"}`,
      tag: "logsync", // one notification, replaced, however many pushes came
    });
  }
}

/** base64url → Uint8Array, for pushManager.subscribe's applicationServerKey. */
function decodeKey(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (char) => char.charCodeAt(0));
}

/** Subscribe to Web Push with the server's key and register the subscription as a wake-up. */
async function registerWakeups(pull) {
  const publicKey = await pull.vapidKey(); // GET /v1/vapid
  if (publicKey === null) return; // the server has no VAPID key: no Web Push
  const subscription =
    (await self.registration.pushManager.getSubscription()) ??
    (await self.registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: decodeKey(publicKey),
    }));
  await pull.registerWakeup({ webpush: subscription.toJSON() }); // POST /v1/wakeups
}

self.addEventListener("message", (event) => {
  if (event.data?.type !== "logsync/login") return;
  const { node, token } = event.data;
  event.waitUntil(
    (async () => {
      await storage.set("login", { node, token });
      clientPromise = undefined;
      const pull = await client();
      for (const channel of CHANNELS) await pull.subscribe(channel);
      await registerWakeups(pull);
      await syncNow();
    })(),
  );
});

self.addEventListener("push", (event) => {
  let payload;
  try {
    payload = event.data?.json();
  } catch {
    payload = undefined;
  }
  if (payload?.type !== "logsync/wake") return;
  event.waitUntil(syncNow());
});

// The browser replaced the push subscription (expired or rotated): register the new one.
self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(
    (async () => {
      const pull = await client();
      if (pull) await registerWakeups(pull);
    })(),
  );
});

// A sync when the worker starts too (after an update, or when the page opens).
self.addEventListener("activate", (event) => {
  event.waitUntil(syncNow().catch(() => {}));
});
