import net from "node:net";

/**
 * A TCP proxy that a test or a chaos run owns, in front of one or more API servers, so it can cut the
 * network without touching either side (test/agent*.test.ts, scripts/chaos-agents.ts).
 */
export interface TcpProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  /** Connections accepted so far (each goes to the next target in turn). */
  readonly accepted: number;
  /** Connections open through the proxy now. */
  readonly connections: number;
  /** Closes every open connection (both sides see it end at once). */
  drop(): void;
  /**
   * Stops forwarding, as a network that went silent: open connections stay open but carry nothing
   * (one side closing is not passed on), new ones are accepted and held. `drop` first to make the
   * servers see the old ones end.
   */
  hold(): void;
  /** Forwards again (held connections included). */
  restore(): void;
  close(): Promise<void>;
}

/**
 * Starts a proxy on 127.0.0.1 that forwards each connection to the next of `targets` (base URLs),
 * round-robin, so an agent's calls over HTTP/1.1 (one connection each, as the pool has them) land
 * on different replicas.
 */
export async function startTcpProxy(targets: string[]): Promise<TcpProxy> {
  const upstreams = targets.map((t) => new URL(t));
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let held = false;
  let accepted = 0;
  const forward = (pair: { client: net.Socket; upstream: net.Socket }) => {
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
  };
  const stopForwarding = (pair: { client: net.Socket; upstream: net.Socket }) => {
    pair.client.unpipe(pair.upstream);
    pair.upstream.unpipe(pair.client);
    pair.client.pause();
    pair.upstream.pause();
  };
  const server = net.createServer((client) => {
    const target = upstreams[accepted++ % upstreams.length]!;
    const upstream = net.connect(Number(target.port), target.hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    for (const s of [client, upstream]) {
      s.on("error", () => undefined);
      // While held, one side closing is not passed on (nothing crosses a silent network): the
      // other side stays open until restore or drop.
      s.on("close", () => {
        if (held) return;
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      });
    }
    if (held) client.pause();
    else forward(pair);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const drop = () => {
    for (const p of pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
  };
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    get accepted() {
      return accepted;
    },
    get connections() {
      return [...pairs].filter((p) => !p.client.destroyed && !p.upstream.destroyed).length;
    },
    drop,
    hold() {
      held = true;
      pairs.forEach(stopForwarding);
    },
    restore() {
      held = false;
      for (const p of pairs) {
        if (p.client.destroyed || p.upstream.destroyed) {
          pairs.delete(p);
          p.client.destroy();
          p.upstream.destroy();
        } else forward(p);
      }
    },
    async close() {
      drop();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
