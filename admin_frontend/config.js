// Settings for the admin page, as nginx serves them (docker compose): a deployment puts its own
// values here. `herald api` serves its own config.js instead, written from its settings
// (backend/admin_page.py: HERALD_OIDC_*, HERALD_AUTH_URL, development-only conveniences).
// Nothing else in the page holds an address.
export default {
  // The GraphQL endpoint, for HTTP and for the WebSocket; same origin as the page by default.
  graphqlPath: "/graphql",

  // The development auth-service stand-in (`herald auth-standin`), used by "Pick a demo user"
  // on the sign-in screen. Set it to null where there is no stand-in (production).
  authStandinUrl: "http://127.0.0.1:8001",

  // "Sign in with the auth service": the page posts the login and password to
  // `url + loginPath` and gets an access and a refresh token (`access_token`,
  // `refresh_token`), then trades the refresh token at `url + refreshPath` for a new pair
  // before the access token expires, and sends it to `url + logoutPath` (null: nowhere) on
  // sign-out, which revokes it. null hides the form. These are the stand-in's paths.
  authService: {
    url: "http://127.0.0.1:8001",
    loginPath: "/api/v1/auth/session/login",
    refreshPath: "/api/v1/auth/session/refresh",
    logoutPath: "/api/v1/auth/session/logout",
  },

  // Single sign-on through the company's OpenID provider (authorization code with PKCE):
  // { issuer: "https://id.example.com", clientId: "herald-admin", scopes: "openid profile",
  //   label: "Example ID" }. The provider must list this page's address (…/admin/) as a
  // redirect URI and a post-logout redirect URI. null hides the button.
  oidc: null,

  // The paste-a-token box, for development (tokens from `herald token`); false hides it.
  tokenPaste: true,

  // The live feed streams the `deliveryUpdates` subscription over the WebSocket. If the
  // subscription fails it falls back to checking `deliveries` every livePollSeconds; "poll"
  // makes it check from the start (for a proxy that does not pass WebSockets through).
  liveFeed: "subscription",
  livePollSeconds: 3,

  // The WebSocket heartbeat behind the connection indicator in the header.
  heartbeatSeconds: 15,
};
