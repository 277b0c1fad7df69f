// GraphiQL with the explorer plugin, talking to the same origin's /graphql: queries and
// mutations over HTTP, subscriptions over graphql-transport-ws (graphql-ws).
import "graphiql/setup-workers/vite";
import "graphiql/style.css";
import "@graphiql/plugin-explorer/style.css";

import { explorerPlugin } from "@graphiql/plugin-explorer";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import { createRoot } from "react-dom/client";

import { defaultTabs } from "./tabs.js";

const config = JSON.parse(document.getElementById("herald-graphiql-config").textContent);
const endpoint = new URL(config.endpoint, window.location.href);
const subscriptionUrl = `${endpoint.protocol === "https:" ? "wss" : "ws"}://${endpoint.host}${endpoint.pathname}`;

function authorizationOf(headers) {
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() === "authorization") return value;
  }
  return undefined;
}

// Browsers cannot set headers on a WebSocket: the token from the headers tab goes in
// connection_init ({authorization: "Bearer …"}). One fetcher, hence one socket, per token.
const fetchers = new Map();
function fetcherFor(authorization) {
  if (!fetchers.has(authorization)) {
    fetchers.set(
      authorization,
      createGraphiQLFetcher({
        url: endpoint.href,
        subscriptionUrl,
        wsConnectionParams: authorization ? { authorization } : {},
      }),
    );
  }
  return fetchers.get(authorization);
}

function fetcher(params, options) {
  return fetcherFor(authorizationOf(options?.headers))(params, options);
}

const explorer = explorerPlugin();

createRoot(document.getElementById("graphiql")).render(
  <GraphiQL
    fetcher={fetcher}
    plugins={[explorer]}
    defaultTabs={defaultTabs(config.headers)}
    defaultHeaders={config.headers ?? undefined}
    defaultEditorToolsVisibility={config.headers ? "headers" : false}
    isHeadersEditorEnabled
  />,
);
