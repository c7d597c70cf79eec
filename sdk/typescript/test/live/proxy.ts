/**
 * An HTTP proxy between the SDK and the server (node:http), which a test can cut: the live
 * tests' fault injection, like tests/sdk/faulty_proxy.py for the Python SDK.
 *
 * Modes (changed while it runs):
 * - "pass": everything is forwarded, streams piped as they come;
 * - "down": every connection is destroyed as soon as its request arrives (the SDK sees a
 *   reset), and `cut()` also ends the ones open (live watch streams); `refuse()` also stops
 *   listening (connections refused) until `restore()`;
 * - "hold_streams": a watch is answered 200 `text/event-stream` and then nothing ever comes
 *   (a proxy that buffers it); everything else is forwarded;
 * - "html_404": every request gets a load balancer's HTML 404 (not the service's word).
 * `outcomes`: "pass", or "alternate": outcome POSTs number 0, 2, 4, ... fail in turn as
 * refused (503, never forwarded), lost (forwarded, then answered 502), refused, lost by a
 * destroyed socket (forwarded, then the connection dropped), ...; odd ones go through.
 */

import http from "node:http";
import type { AddressInfo } from "node:net";

export type Mode = "pass" | "down" | "hold_streams" | "html_404";
export type Fault = "refused" | "lost_502" | "lost_reset";

export interface Forwarded {
  key: string;
  status: number;
  replayed: boolean;
}

export class Proxy {
  mode: Mode = "pass";
  outcomes: "pass" | "alternate" = "pass";
  url = "";
  /** The `Last-Event-ID` of every watch request that reached the proxy, in order. */
  readonly streamIds: (string | null)[] = [];
  /** Every outcome POST's fault, with its `Idempotency-Key`. */
  readonly faults: [Fault, string][] = [];
  /** Every outcome POST the server answered. */
  readonly forwarded: Forwarded[] = [];
  /** Every request (method, path, status) the server answered through the proxy. */
  readonly passed: [string, string, number][] = [];
  private outcomePosts = 0;
  private readonly upstream: URL;
  private readonly server: http.Server;
  private readonly open = new Set<{ destroy(): void }>();
  private readonly agent = new http.Agent({ keepAlive: false });

  constructor(upstream: string) {
    this.upstream = new URL(upstream);
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on("connection", (socket) => {
      this.open.add(socket);
      socket.on("close", () => this.open.delete(socket));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Down, with every open connection (watch streams included) ended at once. */
  cut(): void {
    this.mode = "down";
    for (const socket of this.open) socket.destroy();
  }

  /** Down harder: the port stops listening, so connections are refused (ECONNREFUSED: nothing was sent). */
  async refuse(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Listening again on the same port, forwarding everything. */
  async restore(): Promise<void> {
    const port = Number(new URL(this.url).port);
    this.mode = "pass";
    if (!this.server.listening) await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
  }

  async stop(): Promise<void> {
    for (const socket of this.open) socket.destroy();
    this.agent.destroy();
    // Closing a server that is not listening answers an error: stopped either way.
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private fault(): Fault | null {
    const n = this.outcomePosts++;
    if (n % 2) return null;
    return (["refused", "lost_502", "refused", "lost_reset"] as const)[(n / 2) % 4]!;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = req.url ?? "/";
    const watch = path.split("?")[0]!.endsWith("/bundle/watch");
    if (watch) this.streamIds.push((req.headers["last-event-id"] as string | undefined) ?? null);
    if (this.mode === "down") {
      req.socket.destroy();
      return;
    }
    if (this.mode === "html_404") {
      res.writeHead(404, { "content-type": "text/html" }).end("<html>not here</html>");
      return;
    }
    if (watch && this.mode === "hold_streams") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.flushHeaders();
      return; // say nothing, ever (the socket is ended by cut() or stop())
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const key = (req.headers["idempotency-key"] as string | undefined) ?? "";
    const outcomes = req.method === "POST" && path.split("?")[0]!.endsWith("/outcomes");
    const fault = outcomes && this.outcomes === "alternate" ? this.fault() : null;
    if (fault !== null) this.faults.push([fault, key]);
    if (fault === "refused") {
      const problem = JSON.stringify({ title: "Refused", status: 503, code: "service_unavailable", detail: "Refused by the test proxy" });
      res.writeHead(503, { "content-type": "application/problem+json" }).end(problem);
      return;
    }
    const headers = { ...req.headers, host: this.upstream.host };
    const upstream = http.request(
      { host: this.upstream.hostname, port: this.upstream.port, path, method: req.method, headers, agent: this.agent },
      (answer) => {
        this.passed.push([req.method ?? "", path, answer.statusCode ?? 0]);
        if (outcomes) {
          this.forwarded.push({ key, status: answer.statusCode ?? 0, replayed: answer.headers["idempotent-replayed"] === "true" });
        }
        if (fault === "lost_502" || fault === "lost_reset") {
          answer.resume(); // the server has the batch; the SDK hears it failed
          answer.on("end", () => {
            if (fault === "lost_reset") {
              req.socket.destroy();
            } else {
              const problem = JSON.stringify({ title: "Lost", status: 502, code: "bad_gateway", detail: "The test proxy lost the answer" });
              res.writeHead(502, { "content-type": "application/problem+json" }).end(problem);
            }
          });
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.flushHeaders();
        answer.pipe(res);
        const end = { destroy: () => answer.destroy() };
        this.open.add(end);
        answer.on("close", () => this.open.delete(end));
      },
    );
    upstream.on("error", () => req.socket.destroy());
    res.on("close", () => upstream.destroy());
    upstream.end(body);
  }
}
