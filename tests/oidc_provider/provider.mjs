// A real OpenID provider for the single sign-on tests: node-oidc-provider (OpenID Certified),
// configured by the test that starts it. One argument, a JSON object:
//   port, issuer, clientId, redirectUri   the admin page, a public client with PKCE
//   audience, accessTokenTtl               JWT access tokens for Herald (a resource indicator)
//   jwk                                    the private signing key (RS256), made by the test
//   rolesClaim, users                      {login: [role values]}: the people who can sign in
// Sign-in and consent are the provider's development interaction pages (any password).
// Prints "listening <issuer>" once it accepts connections.

import Provider, { errors } from "oidc-provider";

const config = JSON.parse(process.argv[2]);
const users = config.users;

const provider = new Provider(config.issuer, {
  clients: [
    {
      client_id: config.clientId,
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: [config.redirectUri],
      post_logout_redirect_uris: [config.redirectUri],
    },
  ],
  jwks: { keys: [config.jwk] },
  pkce: { required: () => true },
  cookies: { keys: ["herald-test-provider-cookie-key"] },
  claims: { openid: ["sub"], profile: ["name", config.rolesClaim] },
  async findAccount(ctx, id) {
    if (!(id in users)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: id, [config.rolesClaim]: users[id] };
      },
    };
  },
  // The roles go into the access token Herald reads, not only into the ID token.
  async extraTokenClaims(ctx, token) {
    if (token.kind !== "AccessToken" || !(token.accountId in users)) return undefined;
    return { [config.rolesClaim]: users[token.accountId] };
  },
  // A refresh token for the admin page without offline_access (and its forced consent).
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed("refresh_token");
  },
  ttl: {
    AccessToken: config.accessTokenTtl,
    IdToken: 3600,
    RefreshToken: 3600,
    Session: 3600,
    Grant: 3600,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.audience,
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, resource) {
        if (resource !== config.audience) throw new errors.InvalidTarget();
        return {
          scope: "openid profile",
          audience: config.audience,
          accessTokenTTL: config.accessTokenTtl,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
});

// What the provider refused and why, on stderr, for a test that fails.
for (const event of ["end_session.error", "grant.error", "authorization.error", "server_error", "revocation.error"]) {
  provider.on(event, (ctx, error) => console.error(event, error?.message, error?.error_description, error?.cause?.message));
}

const server = provider.listen(config.port, "127.0.0.1", () => {
  console.log(`listening ${config.issuer}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
