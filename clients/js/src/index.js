/**
 * @logsync/client: the pull client, the WebSocket client, `createClient` (either, by URL) and
 * the storage adapters that work everywhere.
 * Node's FileStorage is in "@logsync/client/storage-node", the browsers' IndexedDBStorage in
 * "@logsync/client/storage-indexeddb" (imported apart: each needs its platform).
 */

export { createClient } from "./client.js";
export { backoffDelay, MAX_WAIT_S, parseRetryAfter, PullClient, SyncError } from "./pull.js";
export { MemoryStorage } from "./storage.js";
export { PROTOCOL, SocketClient } from "./ws.js";
