// The part of oidc-client-ts the admin page uses, bundled (with its one dependency) into
// admin_frontend/vendor/oidc-client-ts/oidc-client-ts.js by `npm run vendor`.
export { Log, UserManager, WebStorageStateStore } from "oidc-client-ts";
