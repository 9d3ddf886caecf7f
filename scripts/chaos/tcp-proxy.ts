import net from "node:net";

/**
 * A TCP proxy that a chaos run or a test owns, between an agent and one control-plane replica, so
 * it can cut the network without touching either process. `cut()` stops forwarding as a partition
 * does: bytes on open connections go nowhere and new connections are accepted but never reach the
 * server (the agent sees silence, not a reset); `heal()` forwards again, closing what was held (as
 * TCP would after a long partition), so the agent reconnects.
 */
export class TcpProxy {
  private readonly sockets = new Set<net.Socket>();
  private readonly held = new Set<net.Socket>();
  private cutNow = false;
  private server: net.Server | undefined;
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** Listens on a free loopback port; resolves with the proxy's http:// address. */
  async start(): Promise<string> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return `http://127.0.0.1:${this.port}`;
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on("close", () => (this.sockets.delete(s), this.held.delete(s)));
    s.on("error", () => undefined);
  }

  private accept(client: net.Socket): void {
    this.track(client);
    if (this.cutNow) {
      // Accepted and left hanging: what a client sees behind a partition that drops packets.
      client.pause();
      this.held.add(client);
      return;
    }
    const upstream = net.connect(this.targetPort, this.targetHost);
    this.track(upstream);
    // A side that closes closes the other (a replica killed: its agents see the reset at once).
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Connections open through the proxy now (each counts its two sockets once). */
  get connections(): number {
    return Math.floor(this.sockets.size / 2);
  }

  /** Stops forwarding: open connections go silent, new ones hang. */
  cut(): void {
    this.cutNow = true;
    for (const s of this.sockets) {
      s.unpipe();
      s.pause();
      this.held.add(s);
    }
  }

  /** Forwards again; the connections held during the cut are closed. */
  heal(): void {
    this.cutNow = false;
    for (const s of this.held) s.destroy();
    this.held.clear();
  }

  /** Closes every connection now (a reset, not a partition). */
  drop(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}
