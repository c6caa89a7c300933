/**
 * FileStorage: the storage adapter for Node — every key in one JSON file, each write atomic.
 *
 * A write goes to a temporary file beside the target, is flushed (fsync), then renamed over it,
 * so a crash leaves either the old or the new file, never a torn one. Writes are queued one
 * after another. One process per file: two processes writing the same file lose each other's
 * writes (the last rename wins).
 */

import { open, readFile, rename, unlink } from "node:fs/promises";

let temporaries = 0;

export class FileStorage {
  /** @param {string} path the JSON file (created on the first write; its folder must exist) */
  constructor(path) {
    this.path = path;
    /** @type {Promise<Record<string, unknown>> | undefined} */
    this._loading = undefined;
    /** @type {Promise<void>} */
    this._writing = Promise.resolve();
  }

  /** @param {string} key */
  async get(key) {
    const values = await this._values();
    return Object.hasOwn(values, key) ? structuredClone(values[key]) : undefined;
  }

  /** @param {string} key @param {unknown} value */
  async set(key, value) {
    const values = await this._values();
    values[key] = structuredClone(value);
    await this._write(values);
  }

  /** @param {string} key */
  async delete(key) {
    const values = await this._values();
    if (!Object.hasOwn(values, key)) return;
    delete values[key];
    await this._write(values);
  }

  /** @returns {Promise<Record<string, unknown>>} */
  _values() {
    this._loading ??= readFile(this.path, "utf8").then(
      (text) => JSON.parse(text),
      (error) => {
        if (error.code === "ENOENT") return {};
        throw error;
      },
    );
    return this._loading;
  }

  /** @param {Record<string, unknown>} values */
  _write(values) {
    // The text is taken now; the chain keeps the renames in the order of the calls.
    const text = JSON.stringify(values);
    const done = this._writing.then(() => writeAtomically(this.path, text));
    this._writing = done.catch(() => {});
    return done;
  }
}

/** @param {string} path @param {string} text */
async function writeAtomically(path, text) {
  temporaries += 1;
  const temporary = `${path}.${process.pid}.${temporaries}.tmp`;
  const file = await open(temporary, "w");
  try {
    await file.writeFile(text, "utf8");
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => {});
    throw error;
  }
}
