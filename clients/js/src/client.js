/**
 * `createClient(options)`: one entry point for both transports, chosen by the URL's scheme —
 * `ws://`/`wss://` gives a {@link SocketClient} (ws.js, the Logux WebSocket protocol),
 * `http://`/`https://` a {@link PullClient} (pull.js, `POST /v1/sync`). Both take the same
 * `node`, `token`, `storage`, `subprotocol` options and share `push`, `subscribe`,
 * `unsubscribe`, `sync`, `pending`, `subscriptions` and the `action`/`processed`/`undo`/`error`
 * events (a SocketClient also needs `start()`; see the README for what differs).
 */

import { PullClient } from "./pull.js";
import { SocketClient } from "./ws.js";

/**
 * @param {{ url: string } & Record<string, any>} options the options of either class
 * @returns {PullClient | SocketClient}
 */
export function createClient(options) {
  const scheme = /^([a-z]+):/i.exec(options?.url ?? "")?.[1]?.toLowerCase();
  if (scheme === "ws" || scheme === "wss") return new SocketClient(options);
  if (scheme === "http" || scheme === "https") return new PullClient(options);
  throw new TypeError(`url must be ws(s):// or http(s)://, not ${JSON.stringify(options?.url)}`);
}
