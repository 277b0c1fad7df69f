// Settings for the admin page. `herald api` serves this file as it is; a deployment (nginx)
// can serve its own copy with other values. Nothing else in the page holds an address.
export default {
  // The GraphQL endpoint, for HTTP and for the WebSocket; same origin as the page by default.
  graphqlPath: "/graphql",

  // The development auth-service stand-in (`herald auth-standin`), used by "Pick a demo user"
  // on the sign-in screen. Set it to null where there is no stand-in (production).
  authStandinUrl: "http://127.0.0.1:8001",

  // The live feed streams the `deliveryUpdates` subscription over the WebSocket. If the
  // subscription fails it falls back to checking `deliveries` every livePollSeconds; "poll"
  // makes it check from the start (for a proxy that does not pass WebSockets through).
  liveFeed: "subscription",
  livePollSeconds: 3,

  // The WebSocket heartbeat behind the connection indicator in the header.
  heartbeatSeconds: 15,
};
