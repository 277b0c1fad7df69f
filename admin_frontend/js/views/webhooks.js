// Webhooks (admins): the endpoints that receive delivery status changes (and, when asked,
// email opens and clicks), signed. The list with each endpoint's filters and state; a dialog
// registers or edits one (typed errors at their fields) and shows the signing secret; an
// endpoint is paused and resumed in one click, deleted after a confirmation, and its log
// lists each POST with the endpoint's answer, newest first.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { STATUSES, emptyState, formatDateTime, h, pageTitle, setChildren, spinner, splitIds, withProgress } from "../dom.js";
import { confirmDanger, openDialog } from "../dialog.js";
import { pagedTable } from "../paged.js";
import { secretBox } from "../secret.js";
import { ApiError, setBanner, showFieldError, showFormError } from "../errors.js";

const LOG_PAGE = 20;
const ENDPOINT_FIELDS = "id url description eventTypes statuses engagements active legacySignature createdBy createdAt";
const LIST = `query WebhookEndpoints { webhookEndpoints { ${ENDPOINT_FIELDS} } }`;
const SECRET = `query WebhookSecret { webhookEndpoints { id secret } }`;
const CREATE = `mutation CreateWebhookEndpoint($input: WebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { __typename ... on WebhookEndpoint { ${ENDPOINT_FIELDS} secret } ${ERROR_FIELDS} }
}`;
const UPDATE = `mutation UpdateWebhookEndpoint($id: ID!, $input: WebhookEndpointPatch!) {
  updateWebhookEndpoint(id: $id, input: $input) { __typename ... on WebhookEndpoint { ${ENDPOINT_FIELDS} } ${ERROR_FIELDS} }
}`;
const DELETE = `mutation DeleteWebhookEndpoint($id: ID!) {
  deleteWebhookEndpoint(id: $id) { __typename ... on WebhookEndpointDeleted { id } ${ERROR_FIELDS} }
}`;
const LOG = `query WebhookDeliveries($id: ID!, $first: Int!, $after: String) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after) {
    edges { node { id messageId attempt succeeded responseStatus error durationMs updateCount nextRetryAt attemptedAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const ENGAGEMENTS = [
  { value: "OPENED", label: "Opens" },
  { value: "CLICKED", label: "Clicks" },
];

function statusLabel(value) {
  return STATUSES.find((s) => s.value === value)?.label ?? value;
}

/** A filter's values as badges, or the word for "empty" (all, or none). */
function filterCell(values, label, emptyWord) {
  if (!values.length) return h("span", { class: "muted" }, emptyWord);
  return values.map((v) => h("span", { class: "badge filter" }, label(v)));
}

function stateBadge(endpoint) {
  return endpoint.active ? h("span", { class: "badge key-active" }, "Active") : h("span", { class: "badge endpoint-paused" }, "Paused");
}

function showSecret(endpoint, { created, onDone } = {}) {
  const box = secretBox({ prefix: "webhook", label: "Signing secret", value: endpoint.secret, describedBy: "webhook-secret-help" });
  const done = h("button", { type: "button", class: "btn primary", id: "webhook-secret-done" }, "Done");
  const body = h(
    "div",
    {},
    h("p", {}, created ? `Registered ${endpoint.url}. Its signing secret:` : `The signing secret of ${endpoint.url}:`),
    box.field,
    h(
      "p",
      { class: "help", id: "webhook-secret-help" },
      "Each POST carries ",
      h("code", {}, "webhook-id"),
      ", ",
      h("code", {}, "webhook-timestamp"),
      " and ",
      h("code", {}, "webhook-signature"),
      " headers (Standard Webhooks): verify them with this secret before trusting the body.",
    ),
  );
  const { dialog, close } = openDialog({ id: "webhook-secret-dialog", title: created ? "Endpoint registered" : "Signing secret", body, actions: [done] });
  done.addEventListener("click", close);
  if (onDone) dialog.addEventListener("close", onDone);
  box.focus();
}

/** The dialog that registers an endpoint (`endpoint` null) or edits one. */
function openForm({ endpoint, onSaved }) {
  const editing = Boolean(endpoint);
  const error = (id) => h("p", { id, class: "field-error", role: "alert", hidden: true });
  const urlInput = h("input", { id: "webhook-url", type: "url", autocomplete: "off", value: endpoint?.url ?? "", placeholder: "https://example.com/herald", "aria-describedby": "webhook-url-help webhook-url-error" });
  const urlError = error("webhook-url-error");
  const descriptionInput = h("input", { id: "webhook-description", autocomplete: "off", maxlength: "500", value: endpoint?.description ?? "" });
  const typesInput = h("input", { id: "webhook-event-types", autocomplete: "off", class: "mono", value: (endpoint?.eventTypes ?? []).join(", "), "aria-describedby": "webhook-event-types-help webhook-event-types-error" });
  const typesError = error("webhook-event-types-error");
  const statusBoxes = STATUSES.map((s) => ({ ...s, input: h("input", { type: "checkbox", id: `webhook-status-${s.value.toLowerCase()}`, value: s.value, checked: endpoint?.statuses.includes(s.value) }) }));
  const engagementBoxes = ENGAGEMENTS.map((e) => ({ ...e, input: h("input", { type: "checkbox", id: `webhook-engagement-${e.value.toLowerCase()}`, value: e.value, checked: endpoint?.engagements.includes(e.value) }) }));
  const secretInput = h("input", { id: "webhook-secret-input", autocomplete: "off", class: "mono", "aria-describedby": "webhook-secret-input-help webhook-secret-input-error" });
  const secretError = error("webhook-secret-input-error");
  const legacy = h("input", { type: "checkbox", id: "webhook-legacy", checked: endpoint?.legacySignature });
  const banner = h("div", { class: "banner-slot", hidden: true });
  const save = h("button", { type: "submit", class: "btn primary", id: "webhook-save", form: "webhook-form" }, editing ? "Save" : "Register endpoint");
  const cancel = h("button", { type: "button", class: "btn ghost" }, "Cancel");
  const choices = (boxes) => boxes.map((b) => h("label", { class: "choice", for: b.input.id }, b.input, b.label));
  const form = h(
    "form",
    { id: "webhook-form", novalidate: true },
    banner,
    h("div", { class: "field" }, h("label", { for: "webhook-url" }, "URL"), urlInput, h("p", { id: "webhook-url-help", class: "help" }, "Herald POSTs signed JSON here, and retries with backoff until it answers 2xx."), urlError),
    h("div", { class: "field" }, h("label", { for: "webhook-description" }, "Description (optional)"), descriptionInput),
    h("div", { class: "field" }, h("label", { for: "webhook-event-types" }, "Event types"), typesInput, h("p", { id: "webhook-event-types-help", class: "help" }, "Only changes of these event types, separated by commas; empty for all."), typesError),
    h("fieldset", { class: "field" }, h("legend", {}, "Statuses (none checked: all)"), h("div", { class: "choices" }, choices(statusBoxes))),
    h("fieldset", { class: "field" }, h("legend", {}, "Email engagements (sent as delivery.engaged)"), h("div", { class: "choices" }, choices(engagementBoxes))),
    h(
      "div",
      { class: "field" },
      h("label", { for: "webhook-secret-input" }, editing ? "New signing secret (optional)" : "Signing secret (optional)"),
      secretInput,
      h("p", { id: "webhook-secret-input-help", class: "help" }, editing ? "Leave empty to keep the current secret." : "Leave empty and Herald makes one (whsec_…)."),
      secretError,
    ),
    h("label", { class: "choice", for: "webhook-legacy" }, legacy, "Also send the deprecated Herald-Signature headers"),
  );
  const fields = {
    url: { error: urlError, input: urlInput },
    eventTypes: { error: typesError, input: typesInput },
    secret: { error: secretError, input: secretInput },
  };
  const { close } = openDialog({ id: "webhook-dialog", title: editing ? "Edit endpoint" : "New webhook endpoint", body: form, actions: [cancel, save], wide: true });
  cancel.addEventListener("click", close);
  urlInput.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setBanner(banner, null);
    for (const f of Object.values(fields)) showFieldError(f.error, "", f.input);
    const input = {
      url: urlInput.value.trim(),
      description: descriptionInput.value.trim(),
      eventTypes: splitIds(typesInput.value),
      statuses: statusBoxes.filter((b) => b.input.checked).map((b) => b.value),
      engagements: engagementBoxes.filter((b) => b.input.checked).map((b) => b.value),
      legacySignature: legacy.checked,
    };
    if (secretInput.value.trim()) input.secret = secretInput.value.trim();
    await withProgress(save, "Saving…", async () => {
      try {
        const saved = editing
          ? unwrap((await graphql(UPDATE, { id: endpoint.id, input })).updateWebhookEndpoint, "WebhookEndpoint")
          : unwrap((await graphql(CREATE, { input })).createWebhookEndpoint, "WebhookEndpoint");
        close();
        onSaved(saved);
      } catch (error) {
        showFormError(error, fields, banner);
      }
    });
  });
}

function confirmDelete(endpoint, onDeleted) {
  confirmDanger({
    id: "webhook-delete-dialog",
    title: "Delete this endpoint?",
    text: `Delete the endpoint ${endpoint.url}? It gets nothing more, and its delivery log goes with it.`,
    action: "Delete",
    confirmId: "webhook-delete-confirm",
    progress: "Deleting…",
    run: async () => unwrap((await graphql(DELETE, { id: endpoint.id })).deleteWebhookEndpoint, "WebhookEndpointDeleted"),
    onDone: onDeleted,
  });
}

function attemptResult(attempt) {
  if (attempt.succeeded) return h("span", { class: "badge key-active" }, `HTTP ${attempt.responseStatus}`);
  const text = attempt.responseStatus ? `HTTP ${attempt.responseStatus}` : "No answer";
  return [h("span", { class: "badge key-revoked" }, text), attempt.error ? h("span", { class: "help attempt-error" }, ` ${attempt.error}`) : null];
}

/** The endpoint's POSTs, newest first, a page at a time. */
function openLog(endpoint) {
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const head = ["Sent", "Message", "Attempt", "Answer", "Items", "Took", "Next attempt"].map((t) => h("th", { scope: "col" }, t));
  const table = h("table", { class: "table", id: "webhook-log-table" }, h("caption", { class: "visually-hidden" }, `POSTs to ${endpoint.url}, newest first.`), h("thead", {}, h("tr", {}, head)), body);
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const more = h("button", { type: "button", class: "btn", id: "webhook-log-more", hidden: true }, "Load more");
  const refresh = h("button", { type: "button", class: "btn", id: "webhook-log-refresh" }, "Refresh");
  const close = h("button", { type: "button", class: "btn primary" }, "Close");
  const content = h("div", {}, h("p", { class: "mono" }, endpoint.url), banner, tableWrap, empty, h("div", { class: "list-foot" }, more));
  const dialog = openDialog({ id: "webhook-log-dialog", title: "Delivery log", body: content, actions: [refresh, close], wide: true });
  close.addEventListener("click", dialog.close);
  const list = pagedTable({
    body,
    tableWrap,
    empty,
    more,
    banner,
    columns: 7,
    loading: "Loading the log…",
    fetch: async (after) => (await graphql(LOG, { id: endpoint.id, first: LOG_PAGE, after })).webhookDeliveries,
    row: (attempt) =>
      h(
        "tr",
        { "data-message-id": attempt.messageId, class: attempt.succeeded ? "" : "attempt-failed" },
        h("td", {}, formatDateTime(attempt.attemptedAt)),
        h("td", { class: "mono" }, attempt.messageId),
        h("td", { class: "attempt-number" }, String(attempt.attempt)),
        h("td", { class: "attempt-result" }, attemptResult(attempt)),
        h("td", { class: "attempt-items" }, String(attempt.updateCount)),
        h("td", {}, `${attempt.durationMs} ms`),
        h("td", {}, attempt.nextRetryAt ? formatDateTime(attempt.nextRetryAt) : h("span", { class: "muted" }, "None")),
      ),
    done({ shown }) {
      if (!shown) setChildren(empty, emptyState("Nothing sent yet.", "Each POST to this endpoint, and the endpoint's answer, appears here."));
    },
  });
  refresh.addEventListener("click", () => list.load());
  dialog.dialog.addEventListener("close", () => list.stop());
  list.load();
}

export function render(root, { ctx }) {
  const banner = h("div", { class: "banner-slot", hidden: true });
  const body = h("tbody");
  const head = ["URL", "Event types", "Statuses", "Engagements", "State", "Created", ""].map((t) => h("th", { scope: "col" }, t));
  const table = h("table", { class: "table", id: "webhooks-table" }, h("caption", { class: "visually-hidden" }, "Webhook endpoints, oldest first."), h("thead", {}, h("tr", {}, head)), body);
  const tableWrap = h("div", { class: "table-wrap" }, table);
  const empty = h("div", { hidden: true });
  const create = h("button", { type: "button", class: "btn primary", id: "new-webhook" }, "New endpoint");
  let stopped = false;

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Webhooks"), h("div", { class: "head-actions" }, create)),
    h("p", { class: "lead" }, "Endpoints that get each delivery's status changes as they happen, signed, retried with backoff until they answer 2xx."),
    banner,
    tableWrap,
    empty,
  );

  async function load() {
    setBanner(banner, null);
    tableWrap.hidden = false;
    empty.hidden = true;
    setChildren(body, h("tr", {}, h("td", { colspan: "7" }, spinner("Loading endpoints…"))));
    let endpoints;
    try {
      endpoints = (await graphql(LIST)).webhookEndpoints;
    } catch (error) {
      if (stopped) return;
      setChildren(body);
      setBanner(banner, error, { retry: load });
      return;
    }
    if (stopped) return;
    setChildren(body, endpoints.map(row));
    tableWrap.hidden = !endpoints.length;
    empty.hidden = Boolean(endpoints.length);
    setChildren(
      empty,
      endpoints.length ? null : emptyState("No webhook endpoints yet.", "Register one to hear of each delivery's progress in your own systems.", h("button", { type: "button", class: "btn primary", onclick: () => create.click() }, "Register an endpoint")),
    );
  }

  async function setActive(endpoint, button) {
    await withProgress(button, endpoint.active ? "Pausing…" : "Resuming…", async () => {
      try {
        const saved = unwrap((await graphql(UPDATE, { id: endpoint.id, input: { active: !endpoint.active } })).updateWebhookEndpoint, "WebhookEndpoint");
        ctx.toast(saved.active ? `${saved.url} resumed.` : `${saved.url} paused: it gets nothing until resumed.`);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        setBanner(banner, error);
        return;
      }
      load();
    });
  }

  async function revealSecret(endpoint, button) {
    await withProgress(button, "Loading…", async () => {
      try {
        const all = (await graphql(SECRET)).webhookEndpoints;
        const found = all.find((e) => e.id === endpoint.id);
        if (!found) throw new ApiError({ code: "NOT_FOUND", message: "This endpoint was deleted" });
        showSecret({ ...endpoint, secret: found.secret });
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        setBanner(banner, error);
      }
    });
  }

  function row(endpoint) {
    const button = (cls, text, onclick) => {
      const b = h("button", { type: "button", class: `btn small ${cls}` }, text);
      b.addEventListener("click", () => onclick(b));
      return b;
    };
    return h(
      "tr",
      { "data-endpoint-id": endpoint.id, class: endpoint.active ? "" : "endpoint-paused" },
      h("td", { class: "endpoint-url" }, h("span", { class: "mono" }, endpoint.url), endpoint.description ? h("div", { class: "help" }, endpoint.description) : null),
      h("td", { class: "endpoint-types" }, filterCell(endpoint.eventTypes, (t) => t, "All")),
      h("td", { class: "endpoint-statuses" }, filterCell(endpoint.statuses, statusLabel, "All")),
      h("td", { class: "endpoint-engagements" }, filterCell(endpoint.engagements, (e) => ENGAGEMENTS.find((x) => x.value === e)?.label ?? e, "None")),
      h("td", { class: "endpoint-state" }, stateBadge(endpoint)),
      h("td", { title: endpoint.createdBy ? `By ${endpoint.createdBy}` : "" }, formatDateTime(endpoint.createdAt)),
      h(
        "td",
        { class: "row-actions" },
        button("ghost show-log", "Log", () => openLog(endpoint)),
        button("ghost edit-endpoint", "Edit", () =>
          openForm({
            endpoint,
            onSaved: (saved) => {
              ctx.toast(`${saved.url} saved.`);
              load();
            },
          }),
        ),
        button("ghost show-secret", "Secret", (b) => revealSecret(endpoint, b)),
        button("ghost toggle-endpoint", endpoint.active ? "Pause" : "Resume", (b) => setActive(endpoint, b)),
        button("danger-ghost delete-endpoint", "Delete", () =>
          confirmDelete(endpoint, () => {
            ctx.toast(`${endpoint.url} deleted.`);
            load();
          }),
        ),
      ),
    );
  }

  create.addEventListener("click", () =>
    openForm({
      endpoint: null,
      onSaved: (saved) => {
        load();
        showSecret(saved, { created: true, onDone: () => ctx.toast(`${saved.url} registered.`) });
      },
    }),
  );
  load();
  return () => {
    stopped = true;
  };
}
