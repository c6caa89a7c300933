/**
 * @logsync/client: the pull client and the storage adapters that work everywhere.
 * Node's FileStorage is in "@logsync/client/storage-node", the browsers' IndexedDBStorage in
 * "@logsync/client/storage-indexeddb" (imported apart: each needs its platform).
 */

export { backoffDelay, MAX_WAIT_S, parseRetryAfter, PullClient, SyncError } from "./pull.js";
export { MemoryStorage } from "./storage.js";
