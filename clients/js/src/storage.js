/**
 * The storage adapter interface of {@link PullClient}, and {@link MemoryStorage}.
 *
 * A storage adapter keeps a few JSON-able values by string key. Every method is async:
 *
 *   get(key)        -> the stored value, or undefined when absent
 *   set(key, value) -> resolves once the value is durable (as durable as the adapter gets)
 *   delete(key)     -> resolves once the key is gone
 *
 * A client writes (`set`, `delete`) one at a time, in order, and reads only once, when it starts,
 * so an adapter need not order concurrent writes itself. Adapters:
 * MemoryStorage (here; nothing survives the process), FileStorage (storage-node.js, Node),
 * IndexedDBStorage (storage-indexeddb.js, browsers and service workers).
 *
 * @typedef {object} Storage
 * @property {(key: string) => Promise<unknown>} get
 * @property {(key: string, value: unknown) => Promise<void>} set
 * @property {(key: string) => Promise<void>} delete
 */

/** A storage adapter over a Map: for tests and for clients that need no persistence. */
export class MemoryStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.values = new Map();
  }

  /** @param {string} key */
  async get(key) {
    const text = this.values.get(key);
    // Stored as JSON text so that a caller never shares (and mutates) the stored object.
    return text === undefined ? undefined : JSON.parse(text);
  }

  /** @param {string} key @param {unknown} value */
  async set(key, value) {
    this.values.set(key, JSON.stringify(value));
  }

  /** @param {string} key */
  async delete(key) {
    this.values.delete(key);
  }
}
