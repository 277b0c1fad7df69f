// Single sign-on with the company's OpenID provider (config.oidc): the authorization code flow
// with PKCE, run by oidc-client-ts (admin_frontend/vendor/, bundled from admin_vendor/). The page
// itself is the redirect URI and the post-logout redirect URI; the provider's tokens stay in
// sessionStorage, as the page's own token does. Herald checks the access token (issuer,
// audience, expiry, the provider's keys) and maps the provider's roles to its own.

import config from "../config.js";
import { UserManager, WebStorageStateStore } from "../vendor/oidc-client-ts/oidc-client-ts.js";

let manager = null;

export const oidcEnabled = () => Boolean(config.oidc?.issuer && config.oidc?.clientId);

/** The admin page's address without query or fragment: what the provider sends people back to. */
export function pageUrl() {
  return new URL("./", window.location.href).href;
}

function userManager() {
  manager ??= new UserManager({
    authority: config.oidc.issuer,
    client_id: config.oidc.clientId,
    redirect_uri: pageUrl(),
    post_logout_redirect_uri: pageUrl(),
    response_type: "code",
    scope: config.oidc.scopes || "openid",
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
    stateStore: new WebStorageStateStore({ store: window.sessionStorage }),
    // The session (session.js) renews before expiry, as it does for the auth service's tokens.
    automaticSilentRenew: false,
    loadUserInfo: false,
    monitorSession: false,
  });
  return manager;
}

/** Off to the provider's sign-in; back at the page with `next` (a hash route) afterwards. */
export function beginSignIn(next) {
  return userManager().signinRedirect({ state: { next } });
}

/** Whether this load is the provider sending the person back (a code, or an error). */
export function isCallback() {
  const params = new URLSearchParams(window.location.search);
  return params.has("state") && (params.has("code") || params.has("error"));
}

/** Trade the code for tokens; `{user, next}`. The code leaves the address bar either way. */
export async function completeSignIn() {
  try {
    const user = await userManager().signinRedirectCallback();
    return { user, next: typeof user.state?.next === "string" ? user.state.next : null };
  } finally {
    history.replaceState(null, "", pageUrl() + window.location.hash);
  }
}

/** Why the provider's answer was not a sign-in, in words. */
export function describeFailure(error) {
  if (error?.error === "access_denied") return "The sign-in was cancelled at the identity provider.";
  if (error?.error) return `The identity provider refused the sign-in (${error.error_description || error.error}).`;
  return "The sign-in with the identity provider could not be completed; try again.";
}

/** A fresh access token without leaving the page: the refresh token grant. Throws when refused. */
export async function renew() {
  const user = await userManager().signinSilent();
  if (!user?.access_token) throw new Error("no token");
  return user;
}

/** The provider's user kept in this tab, or null. */
export function storedUser() {
  return userManager().getUser();
}

/** Forget the provider's tokens here (a refused account), without a round trip. */
export function forget() {
  return userManager().removeUser();
}

/** Sign out: the refresh token revoked where the provider can, then its end-session endpoint
 * (RP-initiated logout), which comes back to the sign-in screen. */
export async function endSession() {
  const mgr = userManager();
  const user = await mgr.getUser();
  if (!user) return;
  try {
    if (user.refresh_token) await mgr.revokeTokens(["refresh_token"]);
  } catch {
    // No revocation endpoint, or the provider not answering: the end-session request still ends it.
  }
  try {
    await mgr.signoutRedirect({ id_token_hint: user.id_token });
  } catch {
    // No end_session_endpoint: what is kept here is gone all the same.
    await mgr.removeUser();
  }
}
