/**
 * A tiny HTTP proxy on 127.0.0.1 in front of a real server, for the failure paths: each request
 * takes the next step of a script — `{ status, retryAfter }` (answer that, don't forward),
 * "drop" (forward, then cut the connection instead of answering: a lost response) — and is
 * forwarded once the script is used up. `proxy.requests` records `{ at, body, step }`.
 */

import { createServer } from "node:http";

/**
 * @param {string} target the real server's base URL
 * @param {Array<{ status: number, retryAfter?: string } | "drop">} script
 */
export async function startProxy(target, script = []) {
  const steps = [...script];
  /** @type {{ at: number, body: any, step: unknown }[]} */
  const requests = [];
  const server = createServer(async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString("utf8");
    const step = steps.shift() ?? "forward";
    requests.push({ at: performance.now(), body: text ? JSON.parse(text) : undefined, step });
    if (typeof step === "object") {
      const headers = { "content-type": "application/json" };
      if (step.retryAfter !== undefined) headers["retry-after"] = step.retryAfter;
      response.writeHead(step.status, headers);
      response.end(JSON.stringify({ error: "try-again-later", reason: "the proxy says so" }));
      return;
    }
    const answer = await fetch(new URL(request.url, target), {
      method: request.method,
      headers: { "content-type": request.headers["content-type"] ?? "application/json" },
      body: request.method === "GET" ? undefined : text,
    });
    const body = Buffer.from(await answer.arrayBuffer());
    if (step === "drop") {
      request.socket.destroy();
      return;
    }
    const headers = { "content-type": answer.headers.get("content-type") ?? "application/json" };
    const retryAfter = answer.headers.get("retry-after");
    if (retryAfter !== null) headers["retry-after"] = retryAfter;
    response.writeHead(answer.status, headers);
    response.end(body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}
