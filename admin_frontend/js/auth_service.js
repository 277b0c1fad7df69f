// The company's auth service (config.authService): login and password in, an access and a
// refresh token out; the refresh token traded for a new pair before the access token expires,
// and revoked at sign-out.

import config from "../config.js";

export class AuthServiceError extends Error {
  constructor(kind, status = null) {
    super(kind);
    this.kind = kind; // "refused" (wrong login or password, or a spent refresh token) | "network"
    this.status = status;
  }
}

async function post(path, body) {
  let response;
  try {
    response = await fetch(new URL(path, config.authService.url), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    throw new AuthServiceError("network");
  }
  if (response.status === 400 || response.status === 401 || response.status === 403) {
    throw new AuthServiceError("refused", response.status);
  }
  if (!response.ok) throw new AuthServiceError("network", response.status);
  const pair = await response.json();
  if (typeof pair.access_token !== "string") throw new AuthServiceError("network", response.status);
  return { accessToken: pair.access_token, refreshToken: typeof pair.refresh_token === "string" ? pair.refresh_token : null };
}

export const authServiceEnabled = () => Boolean(config.authService?.url);

/** `{accessToken, refreshToken}` for a login and password; throws AuthServiceError. */
export function logIn(login, password) {
  return post(config.authService.loginPath, { login, password });
}

/** A new pair for a refresh token; throws AuthServiceError. */
export function refresh(refreshToken) {
  return post(config.authService.refreshPath, { refresh_token: refreshToken });
}

/** Revoke the refresh token at sign-out (config.authService.logoutPath); a failure is not the
 * person's problem: their tab forgets the token either way. */
export async function logOut(refreshToken) {
  if (!refreshToken || !config.authService?.logoutPath) return;
  try {
    await fetch(new URL(config.authService.logoutPath, config.authService.url), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
      keepalive: true,
    });
  } catch {
    // the auth service is not answering: the token expires on its own
  }
}
