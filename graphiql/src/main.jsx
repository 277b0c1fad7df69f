// GraphiQL with the explorer plugin, talking to the same origin's /graphql: queries and
// mutations over HTTP, subscriptions over graphql-transport-ws (graphql-ws).
import "graphiql/setup-workers/vite";
import "graphiql/style.css";
import "@graphiql/plugin-explorer/style.css";

import { explorerPlugin } from "@graphiql/plugin-explorer";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import { parse } from "graphql";
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

// The toolkit sends an operation over the WebSocket only when the options carry a parsed
// document naming a subscription. GraphiQL passes the editor's last parse, which lags behind a
// fast tab switch (a subscription would go over HTTP): parse the text being sent instead.
function withDocument(params, options) {
  let documentAST;
  try {
    documentAST = parse(params.query);
  } catch {
    return [params, options];
  }
  const operations = documentAST.definitions.filter((node) => node.kind === "OperationDefinition");
  let operationName = params.operationName ?? undefined;
  if (operations.length === 1 && operations[0].name?.value !== operationName) {
    operationName = operations[0].name?.value;
  }
  return [{ ...params, operationName }, { ...options, documentAST }];
}

function fetcher(params, options) {
  const [sent, sentOptions] = withDocument(params, options);
  return fetcherFor(authorizationOf(options?.headers))(sent, sentOptions);
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
