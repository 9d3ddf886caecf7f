import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { TransportProvider } from "@connectrpc/connect-query";
import { App } from "./app";
import { isAuthError, isConnectionError, transport } from "./services/client";
import { reportOutage, reportRecovered } from "./services/connection";
import { LIVE_REFRESH_MS } from "./hooks/useLiveTasks";
import "./styles.css";

/** Queries that cannot reach the server show as one "api" outage until a query succeeds again. */
const queryClient = new QueryClient({
  queryCache: new QueryCache({
    onError(err) {
      if (isConnectionError(err)) reportOutage({ source: "api", attempt: 1, retryAt: Date.now() + LIVE_REFRESH_MS });
    },
    onSuccess() {
      reportRecovered("api");
    },
  }),
  mutationCache: new MutationCache({
    onSuccess() {
      reportRecovered("api");
    },
  }),
  defaultOptions: {
    queries: {
      // Refused calls wait for a token; other answers (NotFound, InvalidArgument) do not change on retry.
      retry: (failures, err) => !isAuthError(err) && isConnectionError(err) && failures < 3,
      retryDelay: (failures) => Math.min(8_000, 500 * 2 ** failures),
      staleTime: 1_000,
    },
    mutations: { retry: false },
  },
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <TransportProvider transport={transport}>
      <QueryClientProvider client={queryClient}>
        <App />
      </QueryClientProvider>
    </TransportProvider>
  </StrictMode>,
);
