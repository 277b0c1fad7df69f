// Recipients: the users Herald keeps a profile for, searched by id, email or name, with cursor
// paging and a sync from the auth service that shows its progress; and one recipient's page:
// profile, addresses and their states, preferences, topics, recent deliveries, and (admins
// only) forgetting the user. The search lives in the URL, so a search can be shared.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { openDialog } from "../dialog.js";
import { buildQuery, channelLabel, emptyState, formatDateTime, h, pageTitle, setChildren, spinner, statusBadge, withProgress } from "../dom.js";
import { errorBanner, setBanner } from "../errors.js";
import { pagedTable } from "../paged.js";
import { session } from "../session.js";

const PAGE = 25;
const RECENT = 20;
const SYNC_POLL_MS = 1000;
const LIST = `query Recipients($search: String, $first: Int!, $after: String) {
  recipients(search: $search, first: $first, after: $after) {
    edges { node { userId email firstName lastName source refreshedAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const SYNC_FIELDS = "id status pagesDone recipientsSynced error startedAt finishedAt";
const START_SYNC = `mutation SyncRecipients {
  syncRecipients { __typename ... on RecipientSync { ${SYNC_FIELDS} } ${ERROR_FIELDS} }
}`;
const SYNC = `query RecipientSync($id: ID!) { recipientSync(id: $id) { ${SYNC_FIELDS} } }`;
const RECIPIENT = `query Recipient($userId: ID!) {
  recipient(userId: $userId) {
    userId email firstName lastName phone locale timezone source refreshedAt updatedAt
    addresses { id kind platform provider displayValue state disabledReason disabledAt createdAt lastUsedAt }
  }
  preferences(userId: $userId) {
    disabledChannels disabledEventTypes disabledTopics timezone
    quietHours { start end }
    digestCadence { eventType cadence }
  }
  topicsOf(userId: $userId) { key name }
}`;
const DELIVERIES = `query RecentDeliveries($filter: DeliveryFilter, $first: Int!) {
  deliveries(filter: $filter, first: $first) {
    edges { node { id eventId eventType channel status createdAt } }
    pageInfo { hasNextPage }
  }
}`;
const FORGET = `mutation DeleteRecipient($userId: ID!) {
  deleteRecipient(userId: $userId) {
    __typename
    ... on RecipientDeleted {
      recipients addresses inboxItems preferences topicMemberships deliveriesScrubbed
      digestItemsCancelled scheduledEventsChanged campaignsChanged deadLetters auditEntriesScrubbed cacheKeys
    }
    ${ERROR_FIELDS}
  }
}`;
const FORGOTTEN_COUNTS = [
  ["recipients", "Recipient profiles deleted"],
  ["addresses", "Addresses deleted"],
  ["inboxItems", "Inbox items deleted"],
  ["preferences", "Preference rows deleted"],
  ["topicMemberships", "Topic memberships deleted"],
  ["deliveriesScrubbed", "Deliveries scrubbed"],
  ["digestItemsCancelled", "Digest items cancelled"],
  ["scheduledEventsChanged", "Scheduled events changed"],
  ["campaignsChanged", "Campaigns changed"],
  ["deadLetters", "Dead letters deleted"],
  ["auditEntriesScrubbed", "Audit entries scrubbed"],
  ["cacheKeys", "Cache keys deleted"],
];
const SYNC_DONE = new Set(["SUCCEEDED", "FAILED"]);

const recipientHref = (userId) => `#/recipients/${encodeURIComponent(userId)}`;
const fullName = (r) => [r.firstName, r.lastName].filter(Boolean).join(" ");
const orDash = (value) => value || h("span", { class: "muted" }, "—");
const when = (iso) => (iso ? h("time", { datetime: iso }, formatDateTime(iso)) : h("span", { class: "muted" }, "never"));
/** A table in its scrolling wrapper; `body` is its <tbody>. */
const table = (id, caption, headings, body, className = "table compact") =>
  h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: className, id },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))),
      body,
    ),
  );

// --- the list ---------------------------------------------------------------------------------

export function render(root, { query, ctx }) {
  let disposed = false;
  let pollTimer = null;
  const search = (query.search || "").trim();

  const input = h("input", { id: "recipient-search", type: "search", value: search, placeholder: "User id, email or name", autocomplete: "off", spellcheck: "false" });
  const form = h(
    "form",
    { class: "card filters recipient-search", role: "search", "aria-label": "Search recipients", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "recipient-search" }, "Search"), input),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn primary" }, "Search"), search ? h("a", { class: "btn ghost", href: "#/recipients" }, "Clear") : null),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(`#/recipients${buildQuery({ search: input.value.trim() })}`);
  });

  // Syncing (like forgetting) is for admins; managers read.
  const syncButton = session.hasRole("admin") ? h("button", { type: "button", class: "btn", id: "sync-recipients" }, "Sync from the auth service") : null;
  const syncBox = h("div", { id: "sync-progress", "aria-live": "polite", hidden: true });
  const body = h("tbody");
  const banner = h("div", { class: "banner-slot", hidden: true });
  const empty = h("div", { hidden: true });
  const status = h("p", { class: "list-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", hidden: true, id: "recipients-more" }, "Load more");
  const tableWrap = table("recipients-table", "Recipients by user id. Open one to see their profile, addresses and deliveries.", ["User id", "Name", "Email", "Source", "Refreshed"], body, "table clickable");
  const list = pagedTable({
    body,
    tableWrap,
    empty,
    more,
    banner,
    columns: 5,
    loading: "Loading recipients…",
    fetch: async (after) => (await graphql(LIST, { search: search || null, first: PAGE, after })).recipients,
    row,
    done: ({ shown, hasMore }) => {
      status.textContent = shown ? `Showing ${shown} recipient${shown === 1 ? "" : "s"}${hasMore ? "; there are more" : ""}.` : "";
      if (shown) return;
      setChildren(
        empty,
        search
          ? emptyState("No recipient matches this search.", "Search matches part of a user id, an email or a first or last name.", h("a", { class: "btn", href: "#/recipients" }, "Clear the search"))
          : emptyState("No recipients yet.", "Sync the auth service's users, or let services identify them; users are also added on their first message."),
      );
    },
  });
  const { load } = list;

  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Recipients"), h("a", { class: "btn ghost", href: "#/suppressions", id: "open-suppressions" }, "Email suppressions"), syncButton),
    h("p", { class: "lead" }, "The users Herald keeps a profile and addresses for, from the auth service or identified by a service."),
    form,
    syncBox,
    banner,
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );

  function row(r) {
    const link = h("a", { href: recipientHref(r.userId), class: "mono" }, r.userId);
    const tr = h(
      "tr",
      { "data-user-id": r.userId },
      h("td", {}, link),
      h("td", {}, orDash(fullName(r))),
      h("td", {}, orDash(r.email)),
      h("td", {}, h("span", { class: "badge" }, r.source)),
      h("td", {}, when(r.refreshedAt)),
    );
    tr.addEventListener("click", (event) => {
      if (!event.target.closest("a")) ctx.navigate(recipientHref(r.userId));
    });
    return tr;
  }

  // --- the sync ----------------------------------------------------------------------------
  function showSync(job) {
    syncBox.hidden = false;
    syncBox.dataset.status = job.status;
    const counts = `${job.recipientsSynced.toLocaleString()} recipient${job.recipientsSynced === 1 ? "" : "s"} from ${job.pagesDone} page${job.pagesDone === 1 ? "" : "s"}`;
    const text = {
      PENDING: ["alert-info", spinner("Sync queued: waiting for a worker…")],
      RUNNING: ["alert-info", spinner(`Syncing: ${counts} so far…`)],
      SUCCEEDED: ["alert-success", `Sync finished: ${counts}.`],
      FAILED: ["alert-error", `Sync failed after ${counts}: ${job.error || "no reason given"}.`],
    }[job.status];
    setChildren(syncBox, h("div", { class: `alert ${text[0]}`, role: "status" }, text[1]));
  }

  async function poll(id) {
    if (disposed) return;
    let job;
    try {
      job = (await graphql(SYNC, { id })).recipientSync;
    } catch (error) {
      if (!disposed) setBanner(banner, error);
      return finishSync();
    }
    if (disposed) return;
    showSync(job);
    if (!SYNC_DONE.has(job.status)) {
      pollTimer = setTimeout(() => poll(id), SYNC_POLL_MS);
      return;
    }
    finishSync();
    if (job.status === "SUCCEEDED") {
      ctx.toast(`Synced ${job.recipientsSynced} recipients.`);
      load();
    }
  }

  function finishSync() {
    syncButton.disabled = false;
    syncButton.removeAttribute("aria-busy");
  }

  syncButton?.addEventListener("click", async () => {
    setBanner(banner, null);
    syncButton.disabled = true;
    syncButton.setAttribute("aria-busy", "true");
    try {
      const job = unwrap((await graphql(START_SYNC)).syncRecipients, "RecipientSync");
      showSync(job);
      poll(job.id);
    } catch (error) {
      finishSync();
      setBanner(banner, error);
    }
  });

  load();
  return () => {
    disposed = true;
    list.stop();
    clearTimeout(pollTimer);
  };
}

// --- one recipient ----------------------------------------------------------------------------

function profileCard(r) {
  const facts = [
    ["User id", h("code", {}, r.userId)],
    ["Name", orDash(fullName(r))],
    ["Email", orDash(r.email)],
    ["Phone", orDash(r.phone)],
    ["Locale", orDash(r.locale)],
    ["Time zone", orDash(r.timezone)],
    ["Source", h("span", { class: "badge" }, r.source)],
    ["Refreshed", when(r.refreshedAt)],
    ["Last change", when(r.updatedAt)],
  ];
  return h("section", { class: "card", id: "recipient-profile", "aria-labelledby": "profile-h" }, h("h2", { id: "profile-h" }, "Profile"), h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

function addressesCard(addresses) {
  const rows = addresses.map((a) => {
    const disabled = a.state === "DISABLED";
    return h(
      "tr",
      { "data-address-id": a.id, "data-state": a.state, class: disabled ? "address-disabled" : null },
      h("td", {}, a.kind.replace("_", " ").toLowerCase()),
      h("td", {}, orDash(a.provider || a.platform)),
      h("td", { class: "mono truncate", title: a.displayValue }, a.displayValue),
      h(
        "td",
        { class: "address-state" },
        h("span", { class: `badge address-${a.state.toLowerCase()}` }, disabled ? "Disabled" : "Active"),
        disabled ? h("div", { class: "text-error" }, a.disabledReason || "no reason given") : null,
        disabled && a.disabledAt ? h("div", { class: "muted" }, "since ", when(a.disabledAt)) : null,
      ),
      h("td", {}, when(a.createdAt)),
      h("td", {}, when(a.lastUsedAt)),
    );
  });
  return h(
    "section",
    { class: "card", id: "recipient-addresses", "aria-labelledby": "addresses-h" },
    h("h2", { id: "addresses-h" }, "Addresses"),
    addresses.length
      ? table("addresses-table", "The user's channel addresses and whether sends use them", ["Kind", "Provider", "Address", "State", "Added", "Last used"], h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No push or chat addresses. Email and SMS go to the profile's email and phone."),
  );
}

function chips(values, label = (v) => v) {
  return values.length ? h("ul", { class: "chips" }, values.map((v) => h("li", { class: "chip" }, label(v)))) : h("span", { class: "muted" }, "none");
}

function preferencesCard(p, topics) {
  const facts = [
    ["Channels off", chips(p.disabledChannels, channelLabel)],
    ["Event types off", chips(p.disabledEventTypes)],
    ["Topics off", chips(p.disabledTopics)],
    ["Quiet hours", p.quietHours ? `${p.quietHours.start}–${p.quietHours.end} (${p.timezone || "UTC"})` : h("span", { class: "muted" }, "none")],
    ["Digests", chips(p.digestCadence, (d) => `${d.eventType}: ${d.cadence}`)],
  ];
  return h(
    "section",
    { class: "card", id: "recipient-preferences", "aria-labelledby": "preferences-h" },
    h("h2", { id: "preferences-h" }, "Preferences"),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h2", { id: "topics-h" }, "Topics"),
    h("div", { id: "recipient-topics" }, topics.length ? chips(topics, (t) => `${t.name} (${t.key})`) : h("p", { class: "muted" }, "Not in any topic.")),
  );
}

function deliveriesCard(userId) {
  const all = h("a", { class: "btn small", id: "recipient-history-link", href: `#/history${buildQuery({ userId })}` }, "All in History");
  const box = h("div", {}, spinner("Loading deliveries…"));
  graphql(DELIVERIES, { filter: { userId }, first: RECENT })
    .then(({ deliveries }) => {
      const rows = deliveries.edges.map(({ node: d }) =>
        h(
          "tr",
          { "data-delivery-id": d.id, "data-status": d.status },
          h("td", {}, h("a", { href: `#/history${buildQuery({ eventId: d.eventId })}` }, formatDateTime(d.createdAt))),
          h("td", {}, d.eventType),
          h("td", {}, channelLabel(d.channel)),
          h("td", {}, statusBadge(d.status)),
        ),
      );
      setChildren(box, rows.length ? table("recipient-deliveries", `The user's last ${RECENT} deliveries, newest first`, ["Created", "Event type", "Channel", "Status"], h("tbody", {}, rows)) : h("p", { class: "muted" }, "Nothing delivered to this user yet."));
    })
    .catch((error) => setChildren(box, errorBanner(error)));
  return h("section", { class: "card", id: "recipient-recent", "aria-labelledby": "recent-h" }, h("div", { class: "section-head" }, h("h2", { id: "recent-h" }, `Last ${RECENT} deliveries`), all), box);
}

function forgetDialog(userId, onForgotten) {
  const typed = h("input", { id: "forget-confirm-id", autocomplete: "off", spellcheck: "false" });
  const keep = h("button", { type: "button", class: "btn" }, "Keep the user");
  const confirm = h("button", { type: "button", class: "btn danger", id: "forget-confirm", disabled: true }, "Forget this user");
  const error = h("div", { class: "banner-slot", hidden: true });
  const { close } = openDialog({
    id: "forget-dialog",
    title: "Forget this user?",
    body: [
      h("p", {}, "Their profile, addresses, inbox, preferences, topic memberships, waiting digests and scheduled sends are deleted, and their delivery history is kept for counts only, under a one-way hash. This cannot be undone."),
      h("div", { class: "field" }, h("label", { for: "forget-confirm-id" }, "Type the user id ", h("code", {}, userId), " to confirm"), typed),
      error,
    ],
    actions: [keep, confirm],
  });
  typed.addEventListener("input", () => (confirm.disabled = typed.value !== userId));
  keep.addEventListener("click", close);
  confirm.addEventListener("click", () =>
    withProgress(confirm, "Forgetting…", async () => {
      try {
        const result = unwrap((await graphql(FORGET, { userId })).deleteRecipient, "RecipientDeleted");
        close();
        onForgotten(result);
      } catch (failure) {
        setBanner(error, failure);
      }
    }),
  );
  typed.focus();
}

function forgottenReport(userId, counts) {
  return h(
    "section",
    { class: "card", id: "forget-result", role: "status" },
    h("h2", {}, `${userId} was forgotten`),
    h("dl", { class: "facts" }, FORGOTTEN_COUNTS.map(([key, label]) => [h("dt", {}, label), h("dd", { "data-count": key }, String(counts[key]))])),
    h("p", {}, h("a", { class: "btn", href: "#/recipients" }, "Back to recipients")),
  );
}

function renderDetail(root, { params, ctx }) {
  let disposed = false;
  const userId = params.userId;
  const back = h("a", { class: "back", href: "#/recipients" }, "← Recipients");
  const forget = session.hasRole("admin") ? h("button", { type: "button", class: "btn danger-ghost", id: "forget-recipient" }, "Forget this user") : null;
  const content = h("div", { class: "recipient-detail" }, spinner("Loading the recipient…"));
  setChildren(root, h("div", { class: "page-head" }, back, pageTitle("Recipient ", h("code", {}, userId)), forget), content);

  forget?.addEventListener("click", () =>
    forgetDialog(userId, (counts) => {
      forget.remove();
      setChildren(content, forgottenReport(userId, counts));
      ctx.toast(`Forgot ${userId}.`);
    }),
  );

  async function load() {
    let data;
    try {
      data = await graphql(RECIPIENT, { userId });
    } catch (error) {
      if (!disposed) setChildren(content, errorBanner(error, { retry: load }));
      return;
    }
    if (disposed) return;
    if (!data.recipient) {
      forget?.remove();
      setChildren(content, emptyState("No such recipient.", "Herald keeps no profile for this user id: it may have been forgotten, or never synced.", h("a", { class: "btn", href: "#/recipients" }, "Back to recipients")));
      return;
    }
    setChildren(
      content,
      h("div", { class: "grid-2" }, profileCard(data.recipient), preferencesCard(data.preferences, data.topicsOf)),
      addressesCard(data.recipient.addresses),
      deliveriesCard(userId),
    );
  }

  load();
  return () => {
    disposed = true;
  };
}

export const detail = { render: renderDetail };
