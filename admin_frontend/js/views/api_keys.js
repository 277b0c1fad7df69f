// API keys (admins): the keys services send instead of a token. The list, newest first with
// cursor paging (revoked ones when asked); a dialog makes a key for a service with its grants
// and an optional expiry, then shows the key once; revoking asks first.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { emptyState, formatDateTime, fromLocalInput, h, pageTitle, setChildren, withProgress } from "../dom.js";
import { pagedTable } from "../paged.js";
import { confirmDanger, openDialog } from "../dialog.js";
import { secretBox } from "../secret.js";
import { setBanner, showFieldError, showFormError } from "../errors.js";

const PAGE = 25;
const KEY_FIELDS = "id name prefix roles scopes createdBy createdAt lastUsedAt expiresAt revokedAt revokedBy tenantId";
const TENANTS = "query Tenants { tenants { id name } }";
const LIST = `query ApiKeys($revoked: Boolean!, $first: Int!, $after: String) {
  apiKeys(includeRevoked: $revoked, first: $first, after: $after) {
    edges { node { ${KEY_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const CREATE = `mutation CreateApiKey($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { __typename ... on CreatedApiKey { secret apiKey { ${KEY_FIELDS} } } ${ERROR_FIELDS} }
}`;
const REVOKE = `mutation RevokeApiKey($id: ID!) {
  revokeApiKey(id: $id) { __typename ... on ApiKey { ${KEY_FIELDS} } ${ERROR_FIELDS} }
}`;

// What a key may hold, as the API defines it (backend/services/api_keys.py).
const GRANTS = [
  { value: "service", id: "grant-service", label: "service", help: "Everything a service may do: send events, read event types, keep topics and recipients in step." },
  { value: "events:send", id: "grant-events-send", label: "events:send", help: "Send events (sendEvent, sendEvents) and nothing else." },
  { value: "templates:read", id: "grant-templates-read", label: "templates:read", help: "Read templates." },
  { value: "event_types:read", id: "grant-event-types-read", label: "event_types:read", help: "Read the event types." },
];

function grantBadges(key) {
  return [...key.roles, ...key.scopes].map((g) => h("span", { class: "badge grant mono" }, g));
}

function state(key) {
  if (key.revokedAt) return h("span", { class: "badge key-revoked", title: `Revoked by ${key.revokedBy ?? "?"}` }, `Revoked ${formatDateTime(key.revokedAt)}`);
  if (key.expiresAt && new Date(key.expiresAt) <= new Date()) return h("span", { class: "badge key-expired" }, "Expired");
  return h("span", { class: "badge key-active" }, "Active");
}

/** Show a new key once, with a button that copies it. `onDone` runs when the dialog closes. */
function showSecret(created, onDone) {
  const box = secretBox({ prefix: "api-key", label: "API key", value: created.secret, describedBy: "api-key-secret-help" });
  const done = h("button", { type: "button", class: "btn primary", id: "api-key-done" }, "Done");
  const body = h(
    "div",
    {},
    h("p", {}, `The key for ${created.apiKey.name}:`),
    box.field,
    h("p", { class: "alert alert-warning", id: "api-key-secret-help" }, "Copy it now: this is the only time it is shown. Herald keeps only its hash."),
    h("p", { class: "help" }, "Services send it as ", h("code", {}, "Authorization: Bearer hk_…"), " or ", h("code", {}, "X-Api-Key: hk_…"), "."),
  );
  const { dialog, close } = openDialog({ id: "api-key-created", title: "API key created", body, actions: [done] });
  done.addEventListener("click", close);
  dialog.addEventListener("close", onDone);
  box.focus();
}

function openCreateForm({ onCreated }) {
  const nameInput = h("input", { id: "api-key-name", autocomplete: "off", maxlength: "100", "aria-describedby": "api-key-name-help api-key-name-error" });
  const nameError = h("p", { id: "api-key-name-error", class: "field-error", role: "alert", hidden: true });
  const boxes = GRANTS.map((g) => ({ ...g, input: h("input", { type: "checkbox", id: g.id, value: g.value }) }));
  const grantsError = h("p", { id: "api-key-grants-error", class: "field-error", role: "alert", hidden: true });
  const expiresInput = h("input", { id: "api-key-expires", type: "datetime-local", "aria-describedby": "api-key-expires-help api-key-expires-error" });
  const expiresError = h("p", { id: "api-key-expires-error", class: "field-error", role: "alert", hidden: true });
  // Binding to a tenant is offered once the install has tenants.
  const tenantSelect = h("select", { id: "api-key-tenant", "aria-describedby": "api-key-tenant-help api-key-tenant-error" }, h("option", { value: "" }, "None: the whole install"));
  const tenantError = h("p", { id: "api-key-tenant-error", class: "field-error", role: "alert", hidden: true });
  const tenantField = h("div", { class: "field", hidden: true }, h("label", { for: "api-key-tenant" }, "Tenant"), tenantSelect, h("p", { id: "api-key-tenant-help", class: "help" }, "A key bound to a tenant sees and changes only that tenant's data."), tenantError);
  graphql(TENANTS)
    .then(({ tenants }) => {
      tenantSelect.append(...tenants.map((t) => h("option", { value: t.id }, `${t.name} (${t.id})`)));
      tenantField.hidden = tenants.length === 0;
    })
    .catch(() => {}); // without the list the key is made for the whole install, as before
  const banner = h("div", { class: "banner-slot", hidden: true });
  const save = h("button", { type: "submit", class: "btn primary", id: "api-key-save", form: "api-key-form" }, "Create key");
  const cancel = h("button", { type: "button", class: "btn ghost" }, "Cancel");
  const form = h(
    "form",
    { id: "api-key-form", novalidate: true },
    banner,
    h("div", { class: "field" }, h("label", { for: "api-key-name" }, "Service"), nameInput, h("p", { id: "api-key-name-help", class: "help" }, "The service that will use the key, e.g. billing."), nameError),
    h(
      "fieldset",
      { class: "field", "aria-describedby": "api-key-grants-error" },
      h("legend", {}, "Grants"),
      boxes.map((b) => h("label", { class: "choice", for: b.id }, b.input, h("span", { class: "mono" }, b.label), h("span", { class: "help" }, ` ${b.help}`))),
      grantsError,
    ),
    h("div", { class: "field" }, h("label", { for: "api-key-expires" }, "Expires (optional)"), expiresInput, h("p", { id: "api-key-expires-help", class: "help" }, "Leave empty for a key that does not expire."), expiresError),
    tenantField,
  );
  const fields = {
    name: { error: nameError, input: nameInput },
    grants: { error: grantsError, input: boxes[0].input },
    expiresAt: { error: expiresError, input: expiresInput },
    tenantId: { error: tenantError, input: tenantSelect },
  };
  const { close } = openDialog({ id: "api-key-dialog", title: "New API key", body: form, actions: [cancel, save] });
  cancel.addEventListener("click", close);
  nameInput.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setBanner(banner, null);
    for (const f of Object.values(fields)) showFieldError(f.error, "", f.input);
    const input = {
      name: nameInput.value.trim(),
      grants: boxes.filter((b) => b.input.checked).map((b) => b.value),
      expiresAt: fromLocalInput(expiresInput.value),
      tenantId: tenantSelect.value || null,
    };
    await withProgress(save, "Creating…", async () => {
      try {
        const created = unwrap((await graphql(CREATE, { input })).createApiKey, "CreatedApiKey");
        close();
        onCreated(created);
      } catch (error) {
        showFormError(error, fields, banner);
      }
    });
  });
}

function confirmRevoke(key, onRevoked) {
  confirmDanger({
    id: "revoke-dialog",
    title: "Revoke this key?",
    text: `Revoke ${key.prefix}… (${key.name})? Every request and new connection with it is refused from now on, on every API process. This cannot be undone.`,
    action: "Revoke",
    confirmId: "revoke-confirm",
    progress: "Revoking…",
    run: async () => unwrap((await graphql(REVOKE, { id: key.id })).revokeApiKey, "ApiKey"),
    onDone: onRevoked,
  });
}

export function render(root, { ctx }) {
  const showRevoked = h("input", { type: "checkbox", id: "api-keys-revoked" });
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const head = ["Service", "Key", "Grants", "Tenant", "Created", "Last used", "Expires", "State", ""].map((t) => h("th", { scope: "col" }, t));
  const table = h("table", { class: "table", id: "api-keys-table" }, h("caption", { class: "visually-hidden" }, "API keys, newest first."), h("thead", {}, h("tr", {}, head)), body);
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", id: "api-keys-more", hidden: true }, "Load more");
  const create = h("button", { type: "button", class: "btn primary", id: "new-api-key" }, "New API key");

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("API keys"), h("div", { class: "head-actions" }, create)),
    h("p", { class: "lead" }, "Keys that services send instead of a token. Each is shown once, when it is made; Herald keeps only its hash."),
    h("div", { class: "card filters toolbar" }, h("label", { class: "choice", for: "api-keys-revoked" }, showRevoked, "Show revoked keys")),
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );

  const list = pagedTable({
    body,
    tableWrap,
    empty,
    more,
    banner,
    columns: 9,
    loading: "Loading API keys…",
    fetch: async (after) => (await graphql(LIST, { revoked: showRevoked.checked, first: PAGE, after })).apiKeys,
    row,
    done({ shown, hasMore }) {
      if (!shown) {
        setChildren(empty, emptyState("No API keys yet.", "Make one for each service that sends events.", h("button", { type: "button", class: "btn primary", onclick: () => create.click() }, "Create a key")));
      }
      status.textContent = shown ? `Showing ${shown} key${shown === 1 ? "" : "s"}${hasMore ? "; there are more" : ""}.` : "";
    },
  });

  function row(key) {
    const revoke = key.revokedAt ? null : h("button", { type: "button", class: "btn small danger-ghost revoke-key" }, "Revoke");
    revoke?.addEventListener("click", () =>
      confirmRevoke(key, (revoked) => {
        ctx.toast(`Key ${revoked.prefix} revoked.`);
        list.load();
      }),
    );
    return h(
      "tr",
      { "data-key-prefix": key.prefix },
      h("td", {}, key.name),
      h("td", { class: "mono key-prefix" }, `${key.prefix}…`),
      h("td", { class: "grants" }, grantBadges(key)),
      h("td", { class: "key-tenant" }, key.tenantId ? h("span", { class: "mono" }, key.tenantId) : h("span", { class: "muted" }, "All")),
      h("td", { title: `By ${key.createdBy}` }, formatDateTime(key.createdAt)),
      h("td", { class: "last-used" }, key.lastUsedAt ? formatDateTime(key.lastUsedAt) : h("span", { class: "muted" }, "Never")),
      h("td", {}, key.expiresAt ? formatDateTime(key.expiresAt) : h("span", { class: "muted" }, "Never")),
      h("td", { class: "key-state" }, state(key)),
      h("td", {}, revoke),
    );
  }

  showRevoked.addEventListener("change", () => list.load());
  create.addEventListener("click", () =>
    openCreateForm({
      onCreated: (created) => {
        list.load();
        showSecret(created, () => ctx.toast(`Key ${created.apiKey.prefix} created for ${created.apiKey.name}.`));
      },
    }),
  );
  list.load();
  return () => list.stop();
}
