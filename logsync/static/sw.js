/**
 * The demo chat's service worker (served at `/sw.js`, scope `/`): keeps the page's shell (the
 * page, its styles, scripts and the JS client's modules) in a cache, so that the chat opens, and
 * reloads, while offline. Network first (a new version shows as soon as the server is reached),
 * the cache when the network fails. The sync API (`/v1/`) is never cached.
 */

const CACHE = "logsync-demo-v1";
const SHELL = [
  "/",
  "/static/app.js",
  "/static/style.css",
  "/clients/js/ws.js",
  "/clients/js/pull.js",
  "/clients/js/storage.js",
  "/clients/js/storage-indexeddb.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname.startsWith("/v1/")) return;
  // The page is cached under "/" whatever its query (`?user=bob`).
  const key = url.pathname === "/" ? "/" : url.pathname;
  event.respondWith(
    fetch(event.request)
      .then(async (response) => {
        if (response.ok) await (await caches.open(CACHE)).put(key, response.clone());
        return response;
      })
      .catch(async () => (await caches.match(key)) ?? Response.error()),
  );
});
