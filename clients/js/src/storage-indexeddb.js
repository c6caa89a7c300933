/**
 * IndexedDBStorage: the storage adapter for browsers and service workers.
 *
 * One object store of one database holds the values by key (structured clones of JSON-able
 * values). A `set` resolves when its transaction has completed, i.e. when the value is committed.
 * The object store is made when the database is created: give each store name its own database.
 */

export class IndexedDBStorage {
  /**
   * @param {object} [options]
   * @param {string} [options.database] database name (default "logsync")
   * @param {string} [options.store] object store name (default "values")
   * @param {IDBFactory} [options.indexedDB] default globalThis.indexedDB
   */
  constructor({ database = "logsync", store = "values", indexedDB = globalThis.indexedDB } = {}) {
    this.database = database;
    this.store = store;
    this.factory = indexedDB;
    /** @type {Promise<IDBDatabase> | undefined} */
    this._db = undefined;
  }

  /** @param {string} key */
  async get(key) {
    return this._run("readonly", (store) => store.get(key));
  }

  /** @param {string} key @param {unknown} value */
  async set(key, value) {
    await this._run("readwrite", (store) => store.put(value, key));
  }

  /** @param {string} key */
  async delete(key) {
    await this._run("readwrite", (store) => store.delete(key));
  }

  /** @returns {Promise<IDBDatabase>} */
  _open() {
    this._db ??= new Promise((resolve, reject) => {
      const request = this.factory.open(this.database, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(this.store);
      request.onsuccess = () => {
        const db = request.result;
        // Another tab upgrading the database: let it, and open again on the next call.
        db.onversionchange = () => {
          db.close();
          this._db = undefined;
        };
        resolve(db);
      };
      request.onerror = () => reject(request.error);
    });
    return this._db;
  }

  /**
   * One request in its own transaction; resolves with the request's result once the
   * transaction has completed (for a write: committed).
   * @param {IDBTransactionMode} mode
   * @param {(store: IDBObjectStore) => IDBRequest} operation
   */
  async _run(mode, operation) {
    const db = await this._open();
    return new Promise((resolve, reject) => {
      const transaction = db.transaction(this.store, mode);
      const request = operation(transaction.objectStore(this.store));
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = () => reject(transaction.error ?? request.error);
      transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
    });
  }
}
