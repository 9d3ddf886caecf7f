import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Metrics } from "../metrics.js";

/** Counts every RPC by method and resulting Connect code, and times unary ones. */
export function metricsInterceptor(metrics: Metrics): Interceptor {
  return (next) => async (req) => {
    const method = req.method.name;
    const end = metrics.rpcDuration.startTimer({ method });
    try {
      const res = await next(req);
      metrics.rpcRequests.inc({ method, code: "ok" });
      return res;
    } catch (err) {
      const code = err instanceof ConnectError ? Code[err.code] : Code[Code.Unknown];
      metrics.rpcRequests.inc({ method, code: String(code) });
      throw err;
    } finally {
      if (req.method.methodKind === "unary") end();
    }
  };
}
