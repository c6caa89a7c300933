// The storage adapters: MemoryStorage and FileStorage (one JSON file, atomic writes).

import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";

import { MemoryStorage } from "../src/storage.js";
import { FileStorage } from "../src/storage-node.js";
import { tempDir } from "../testing/server.js";

test("MemoryStorage keeps copies, not the caller's objects", async () => {
  const storage = new MemoryStorage();
  const value = { list: [1, 2] };
  await storage.set("k", value);
  value.list.push(3);
  assert.deepEqual(await storage.get("k"), { list: [1, 2] });
  const read = await storage.get("k");
  read.list.push(4);
  assert.deepEqual(await storage.get("k"), { list: [1, 2] });
  await storage.delete("k");
  assert.equal(await storage.get("k"), undefined);
});

test("FileStorage: values survive a new instance, a missing file reads as empty", async () => {
  const path = join(tempDir(), "state.json");
  const first = new FileStorage(path);
  assert.equal(await first.get("cursor"), undefined);
  await first.set("cursor", "abc");
  await first.set("queue", { actions: [[{ type: "a" }, { id: "1 1:1 0", time: 1 }]] });
  const second = new FileStorage(path);
  assert.equal(await second.get("cursor"), "abc");
  assert.deepEqual(await second.get("queue"), {
    actions: [[{ type: "a" }, { id: "1 1:1 0", time: 1 }]],
  });
  await second.delete("cursor");
  assert.equal(await new FileStorage(path).get("cursor"), undefined);
  assert.deepEqual(JSON.parse(await readFile(path, "utf8")), {
    queue: { actions: [[{ type: "a" }, { id: "1 1:1 0", time: 1 }]] },
  });
});

test("FileStorage: concurrent writes all land, in call order, and leave no temp file", async () => {
  const dir = tempDir();
  const path = join(dir, "state.json");
  const storage = new FileStorage(path);
  await Promise.all(Array.from({ length: 50 }, (_, n) => storage.set(`k${n % 5}`, n)));
  const stored = JSON.parse(await readFile(path, "utf8"));
  assert.deepEqual(stored, { k0: 45, k1: 46, k2: 47, k3: 48, k4: 49 });
  assert.deepEqual(await readdir(dir), ["state.json"]);
});

test("FileStorage replaces the file by rename: a reader never sees a torn file", async () => {
  const path = join(tempDir(), "state.json");
  const storage = new FileStorage(path);
  const big = "x".repeat(1 << 20);
  await storage.set("big", big);
  const writes = Array.from({ length: 20 }, (_, n) => storage.set("n", n));
  let reads = 0;
  let pending = true;
  Promise.all(writes).then(() => {
    pending = false;
  });
  const end = performance.now() + 20_000;
  while (pending) {
    assert.ok(performance.now() < end, "the writes took over 20 s");
    const text = await readFile(path, "utf8");
    const parsed = JSON.parse(text); // throws on a half-written file
    assert.equal(parsed.big, big);
    reads += 1;
  }
  assert.ok(reads > 0);
  assert.equal(JSON.parse(await readFile(path, "utf8")).n, 19);
});

test("FileStorage refuses a corrupt file instead of starting empty", async () => {
  const path = join(tempDir(), "state.json");
  await writeFile(path, "{not json");
  await assert.rejects(new FileStorage(path).get("cursor"), SyntaxError);
});
