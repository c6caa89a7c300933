/**
 * The demo chat's page (served at `/` by `logsync serve` with no app argument; the rules are
 * logsync/demo.py). Offline first, over the JS client's WebSocket transport (clients/js/src/ws.js):
 *
 * - what I send is queued in IndexedDB by the client before it is shown, so it survives a reload
 *   or a closed tab, and is sent whenever the client is connected (it reconnects by itself; the
 *   page stops it while the browser says it is offline);
 * - the page's shell is cached by a service worker (sw.js), so it opens and reloads offline;
 * - each conversation's messages, reactions and read receipts are kept in IndexedDB too (saved
 *   before the client moves its cursor past them), so a reload offline shows what was there;
 * - messages are ordered by the time they were written (meta.time, then id), so a message written
 *   offline lands where it was written, and the server's confirmation only changes its marker.
 *
 * Open two users side by side: `/?user=alice` and `/?user=bob` (each user has its own client id
 * and database). `window.chat` exposes the state for the browser tests.
 */

import { SocketClient } from "/clients/js/ws.js";
import { IndexedDBStorage } from "/clients/js/storage-indexeddb.js";

const USER = /^[A-Za-z0-9_-]{1,30}$/;
const ROOMS = ["lobby", "random"];
const PAGE = 30;
const HEARTBEAT_MS = 10_000;
const ONLINE_MS = 25_000;
const $ = (id) => document.getElementById(id);

/** The user id of an action's author, from its id `"<ms> <user>:<client> <seq>"`. */
const authorOf = (id) => id.split(" ")[1].split(":")[0];
/** Order of writing: time, then id. */
const byWriting = (a, b) => a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function start() {
  const params = new URLSearchParams(location.search);
  const user = params.get("user") ?? localStorage.getItem("logsync-demo:user");
  if (user === null || !USER.test(user)) {
    $("login").hidden = false;
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("login-name").value.trim();
      if (!USER.test(name)) return;
      localStorage.setItem("logsync-demo:user", name);
      location.search = `?user=${encodeURIComponent(name)}`;
    });
    $("login-name").focus();
    return;
  }
  localStorage.setItem("logsync-demo:user", user);
  // The page's shell for offline opening and reloads (sw.js).
  navigator.serviceWorker?.register("/sw.js").catch(() => {});
  window.chat = new Chat(user, params.get("room"));
  window.chat.open();
}

/** The chat of one user in one tab: its state, its rendering, its client. */
class Chat {
  constructor(user, room) {
    this.user = user;
    const key = `logsync-demo:client:${user}`;
    let clientId = localStorage.getItem(key);
    if (clientId === null) {
      clientId = Math.random().toString(36).slice(2, 10);
      localStorage.setItem(key, clientId);
    }
    this.storage = new IndexedDBStorage({ database: `logsync-demo-${user}` });
    this.client = new SocketClient({
      url: location.origin, // http(s):// becomes ws(s)://
      node: `${user}:${clientId}`,
      token: "demo",
      storage: this.storage,
      subprotocol: 1,
      backoff: { base: 300, cap: 3000 },
    });
    /** @type {Map<string, object>} room → { messages: Map, reactions: {}, reads: {}, more, before } */
    this.rooms = new Map();
    this.room = room ?? localStorage.getItem(`logsync-demo:room:${user}`) ?? "lobby";
    /** @type {Map<string, number>} user → last heard from (ms) */
    this.presence = new Map();
    this.state = "offline";
    this.pendingCount = 0;
    this.loadingOlder = false;
    this.saving = Promise.resolve();
    /** @type {Map<string, HTMLElement>} message id → its element (kept: no re-render flicker) */
    this.elements = new Map();
    this.lastRead = new Map();
  }

  async open() {
    $("app").hidden = false;
    $("me").textContent = this.user;
    const client = this.client;
    client.on("action", (action, meta) => this.receive(action, meta));
    client.on("processed", (answer) => this.answered(answer, false));
    client.on("undo", (answer) => this.answered(answer, true));
    for (const room of this.knownRooms()) await this.view(room);
    // What is still queued was not sent yet, whatever the saved view says.
    for (const [action, meta] of await client.pending()) {
      if (action.type === "chat/message") this.addMessage(action, meta, "pending");
    }
    this.pendingCount = (await client.pending()).length;
    // Presence is about now: no resume point (its load is who is online now).
    await client.subscribe("presence");
    this.bindUi();
    await this.switchTo(this.room);
    this.connect();
    setInterval(() => this.heartbeat(), HEARTBEAT_MS);
    this.heartbeat();
  }

  knownRooms() {
    const saved = JSON.parse(localStorage.getItem(`logsync-demo:rooms:${this.user}`) ?? "[]");
    return [...new Set([...ROOMS, ...saved, this.room])];
  }

  /** The state of `room`, read from IndexedDB the first time. */
  async view(room) {
    let view = this.rooms.get(room);
    if (view === undefined) {
      view = { messages: new Map(), reactions: {}, reads: {}, more: false, before: 0, loaded: false };
      this.rooms.set(room, view);
      const saved = await this.storage.get(`view:${room}`);
      if (saved !== undefined) {
        for (const message of saved.messages) view.messages.set(message.id, message);
        Object.assign(view, { reactions: saved.reactions, reads: saved.reads });
        Object.assign(view, { more: saved.more, before: saved.before, loaded: true });
      }
    }
    return view;
  }

  /** Save `room`'s state (one write at a time, in order); resolves once saved. */
  save(room) {
    const view = this.rooms.get(room);
    const value = {
      messages: [...view.messages.values()],
      reactions: view.reactions,
      reads: view.reads,
      more: view.more,
      before: view.before,
    };
    this.saving = this.saving.then(() => this.storage.set(`view:${room}`, value)).catch(() => {});
    return this.saving;
  }

  addMessage(action, meta, status, added) {
    const view = this.rooms.get(action.room);
    if (view === undefined) return false;
    const known = view.messages.get(meta.id);
    if (known !== undefined) {
      if (status === "sent" && known.status === "pending") known.status = "sent";
      if (added !== undefined) known.added = added;
      return true;
    }
    view.messages.set(meta.id, {
      id: meta.id,
      time: meta.time,
      user: authorOf(meta.id),
      text: action.text,
      status,
      added,
    });
    return true;
  }

  addReaction(view, messageId, emoji, user) {
    const users = ((view.reactions[messageId] ??= {})[emoji] ??= []);
    if (!users.includes(user)) users.push(user);
  }

  /** An action of a page: apply it, save the conversation (before the cursor moves). */
  async receive(action, meta) {
    const room = action.room;
    if (typeof room === "string" && room.startsWith("dm~") && !this.rooms.has(room)) {
      // A direct conversation someone else opened with me.
      await this.view(room);
      const rooms = [...this.knownRooms(), room];
      localStorage.setItem(`logsync-demo:rooms:${this.user}`, JSON.stringify([...new Set(rooms)]));
      this.renderSidebar();
    }
    switch (action.type) {
      case "chat/message":
        if (!this.addMessage(action, meta, "sent", meta.added)) return;
        break;
      case "chat/history": {
        const view = await this.view(room);
        for (const item of action.messages) this.addMessage(item.action, item, "sent", item.added);
        for (const item of action.reactions) {
          this.addReaction(view, item.action.id, item.action.emoji, authorOf(item.id));
        }
        for (const [reader, id] of Object.entries(action.reads)) this.setRead(view, reader, id);
        if (action.older || !view.loaded) Object.assign(view, { more: action.more, before: action.before });
        view.loaded = true;
        if (action.older) this.loadingOlder = false;
        break;
      }
      case "chat/read": {
        const view = this.rooms.get(room);
        if (view === undefined) return;
        this.setRead(view, authorOf(meta.id), action.id);
        break;
      }
      case "chat/react": {
        const view = this.rooms.get(room);
        if (view === undefined) return;
        this.addReaction(view, action.id, action.emoji, authorOf(meta.id));
        break;
      }
      case "chat/online":
        for (const user of action.users) this.presence.set(user, Date.now());
        this.renderSidebar();
        return;
      case "chat/here":
        this.presence.set(action.user, Date.now());
        this.renderSidebar();
        return;
      default:
        return;
    }
    if (room === this.room) {
      this.render({ older: action.type === "chat/history" && action.older });
      if (action.type !== "chat/read") this.sendRead();
    }
    await this.save(room);
  }

  setRead(view, reader, id) {
    const known = view.messages.get(view.reads[reader]);
    const next = view.messages.get(id);
    if (known === undefined || next === undefined || byWriting(next, known) > 0) {
      view.reads[reader] = id;
    }
  }

  /** The server answered a pushed action: the pending marker goes (or becomes "not sent"). */
  answered(answer, refused) {
    const action = answer.action;
    if (answer.id === undefined || action?.type !== "chat/message") return;
    const view = this.rooms.get(action.room);
    const message = view?.messages.get(answer.id);
    if (message === undefined) return;
    message.status = refused ? "failed" : "sent";
    if (action.room === this.room) this.render();
    this.save(action.room);
  }

  async send(text) {
    const room = this.room;
    const action = { type: "chat/message", room, text };
    const meta = await this.push(action);
    if (meta === undefined) return;
    this.addMessage(action, meta, "pending");
    this.render({ bottom: true });
    await this.save(room);
  }

  async react(messageId, emoji) {
    if (this.elsewhere) return;
    const view = this.rooms.get(this.room);
    this.addReaction(view, messageId, emoji, this.user);
    this.render();
    await this.push({ type: "chat/react", room: this.room, id: messageId, emoji });
    await this.save(this.room);
  }

  heartbeat() {
    this.presence.set(this.user, Date.now());
    this.renderSidebar();
    // Only while online: a heartbeat queued offline would say nothing true when it arrives.
    if (this.state === "online") this.push({ type: "chat/here", user: this.user });
  }

  async switchTo(room) {
    this.room = room;
    localStorage.setItem(`logsync-demo:room:${this.user}`, room);
    const rooms = this.knownRooms();
    localStorage.setItem(`logsync-demo:rooms:${this.user}`, JSON.stringify(rooms));
    await this.view(room);
    // `history`: the channel's load sends its latest messages (logsync/demo.py).
    await this.client.subscribe(`chat/${room}`, { history: PAGE });
    for (const element of this.elements.values()) element.remove();
    this.elements.clear();
    $("title").textContent = this.title(room);
    this.renderSidebar();
    this.render({ bottom: true });
    this.sendRead();
  }

  title(room) {
    if (!room.startsWith("dm~")) return `# ${room}`;
    const other = room.split("~").slice(1).find((name) => name !== this.user) ?? this.user;
    return `@ ${other}`;
  }

  dmWith(other) {
    return `dm~${[this.user, other].sort().join("~")}`;
  }

  olderPage() {
    const view = this.rooms.get(this.room);
    if (this.loadingOlder || !view.more || view.before <= 0) return;
    this.loadingOlder = true;
    this.render();
    this.push({ type: "chat/older", room: this.room, before: view.before });
  }

  // The connection: the client connects, resends what is queued and reconnects by itself; the
  // page adds the browser's own idea of being offline (the client is stopped until back).

  connect() {
    const client = this.client;
    client.on("state", ({ state, pending }) => {
      this.pendingCount = pending;
      this.showState(state);
      if (state === "disconnected") this.announced = false;
      if (state === "synchronized") {
        this.sendRead();
        // Say I am here as soon as I am connected, not only at the next heartbeat.
        if (!this.announced) {
          this.announced = true;
          this.heartbeat();
        }
      }
    });
    // One connection per client id: a second tab of this browser takes it over (the server
    // closes the older one as a `zombie`). The tab that gave way writes nothing more — the
    // queue and the conversations in IndexedDB are the other tab's now — and, looked at again,
    // reloads: it reads them back from IndexedDB and takes the connection back.
    client.on("error", (error) => {
      if (error?.code !== "zombie") return;
      this.elsewhere = true;
      $("text").disabled = true;
      this.showState("disconnected");
    });
    const takeBack = () => {
      if (!this.elsewhere || document.visibilityState !== "visible" || !navigator.onLine) return;
      location.reload();
    };
    document.addEventListener("visibilitychange", takeBack);
    addEventListener("focus", takeBack);
    addEventListener("offline", () => {
      client.stop();
      this.showState("disconnected");
    });
    addEventListener("online", () => {
      if (!this.elsewhere) client.start();
    });
    document.addEventListener("visibilitychange", () => this.sendRead());
    if (navigator.onLine) client.start();
    this.showState(client.state);
  }

  /** The client's state as the page shows it: online, offline, reconnecting, catching up. */
  showState(clientState) {
    let state;
    if (!navigator.onLine) state = "offline";
    else if (this.elsewhere) state = "open in another tab";
    else if (clientState === "synchronized") state = this.pendingCount > 0 ? "catching-up" : "online";
    else if (clientState === "sending") state = "catching-up";
    else state = "reconnecting";
    this.state = state;
    const shown = $("connection");
    shown.dataset.state = state;
    shown.textContent =
      state === "catching-up" ? `catching up · ${this.pendingCount} to send` : state;
  }

  /** Queue an action: saved in IndexedDB, then sent as soon as the client is connected. */
  async push(action) {
    if (this.elsewhere) return undefined; // another tab holds the queue
    const meta = await this.client.push(action);
    return meta;
  }

  /** Tell the conversation that I have seen its latest message from someone else. */
  sendRead() {
    if (document.visibilityState !== "visible") return;
    const view = this.rooms.get(this.room);
    const latest = [...view.messages.values()]
      .filter((message) => message.user !== this.user)
      .sort(byWriting)
      .at(-1);
    if (latest === undefined || this.lastRead.get(this.room) === latest.id) return;
    if (view.reads[this.user] === latest.id) return;
    this.lastRead.set(this.room, latest.id);
    view.reads[this.user] = latest.id;
    this.push({ type: "chat/read", room: this.room, id: latest.id });
  }

  // Rendering: one element per message, updated in place and moved only when out of order.

  bindUi() {
    const text = $("text");
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = text.value.trim();
      if (value === "") return;
      text.value = "";
      this.send(value);
    });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("messages").addEventListener("scroll", () => {
      if ($("messages").scrollTop < 40) this.olderPage();
    });
    text.focus();
  }

  renderSidebar() {
    const rooms = $("rooms");
    rooms.replaceChildren(
      ...this.knownRooms().map((room) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = this.title(room);
        button.setAttribute("aria-current", String(room === this.room));
        button.addEventListener("click", () => this.switchTo(room));
        item.append(button);
        return item;
      }),
    );
    const now = Date.now();
    const here = [...this.presence]
      .filter(([, at]) => now - at < ONLINE_MS)
      .map(([user]) => user)
      .sort();
    $("presence").replaceChildren(
      ...here.map((user) => {
        const item = document.createElement("li");
        item.dataset.user = user;
        if (user === this.user) {
          item.textContent = `${user} (you)`;
        } else {
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = user;
          button.title = `Message ${user} directly`;
          button.addEventListener("click", () => this.switchTo(this.dmWith(user)));
          item.append(button);
        }
        return item;
      }),
    );
  }

  /** Is my message `message` read by someone else (a read of a message written at or after it)? */
  isRead(view, message) {
    return Object.entries(view.reads).some(([reader, id]) => {
      if (reader === this.user) return false;
      const seen = view.messages.get(id);
      return seen !== undefined && byWriting(seen, message) >= 0;
    });
  }

  render({ older = false, bottom = false } = {}) {
    const list = $("messages");
    const view = this.rooms.get(this.room);
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const height = list.scrollHeight;
    const top = list.scrollTop;
    const messages = [...view.messages.values()].sort(byWriting);
    let marker = list.querySelector(".older");
    if (marker === null) {
      marker = document.createElement("li");
      marker.className = "older";
      list.prepend(marker);
    }
    marker.textContent = this.loadingOlder
      ? "loading older messages…"
      : view.more
        ? "scroll up for older messages"
        : "the beginning of the conversation";
    let previous = marker;
    for (const message of messages) {
      const element = this.element(message, view);
      if (previous.nextSibling !== element) previous.after(element);
      previous = element;
    }
    if (bottom || (atBottom && !older)) list.scrollTop = list.scrollHeight;
    else if (older) list.scrollTop = top + (list.scrollHeight - height);
  }

  element(message, view) {
    let element = this.elements.get(message.id);
    if (element === undefined) {
      element = document.createElement("li");
      element.dataset.id = message.id;
      element.innerHTML =
        '<div class="author"></div><div class="text"></div>' +
        '<div class="meta"><time></time><span class="status"></span>' +
        '<span class="reactions"></span><button type="button" class="react">+♥</button></div>';
      element.querySelector(".author").textContent = message.user;
      element.querySelector(".text").textContent = message.text;
      const time = element.querySelector("time");
      time.dateTime = new Date(message.time).toISOString();
      time.textContent = new Date(message.time).toLocaleTimeString([], {
        hour: "2-digit",
        minute: "2-digit",
      });
      const react = element.querySelector(".react");
      react.setAttribute("aria-label", `React with a heart to ${message.user}'s message`);
      react.addEventListener("click", () => this.react(message.id, "♥"));
      this.elements.set(message.id, element);
    }
    const mine = message.user === this.user;
    element.className = `message ${message.status}${mine ? " mine" : ""}`;
    const status = element.querySelector(".status");
    const read = mine && message.status === "sent" && this.isRead(view, message);
    status.className = `status${read ? " read" : ""}`;
    status.textContent = !mine
      ? ""
      : message.status === "pending"
        ? "○ not sent yet"
        : message.status === "failed"
          ? "✗ not sent (refused)"
          : read
            ? "✓✓ read"
            : "✓ sent";
    const reactions = view.reactions[message.id] ?? {};
    element.querySelector(".reactions").textContent = Object.entries(reactions)
      .map(([emoji, users]) => `${emoji} ${users.length}`)
      .join(" ");
    element.querySelector(".reactions").title = Object.entries(reactions)
      .map(([emoji, users]) => `${emoji} ${users.join(", ")}`)
      .join("; ");
    return element;
  }
}

start();
