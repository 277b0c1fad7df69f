// One topic: its facts, its members by user id with cursor paging, adding members (ids pasted
// separated by commas, spaces or new lines), removing the selected ones, editing and deleting.

import { ERROR_FIELDS, graphql, unwrap } from "../api.js";
import { emptyState, formatDateTime, h, pageTitle, setChildren, spinner, splitIds, withProgress } from "../dom.js";
import { openDialog } from "../dialog.js";
import { ApiError, describeError, setBanner, showFieldError } from "../errors.js";
import { TOPIC_FIELDS, memberWords, openTopicForm, selfServiceBadge } from "./topics.js";

const PAGE = 50;
const TOPIC = `query Topic($key: String!, $first: Int!, $after: String) {
  topic(key: $key) {
    ${TOPIC_FIELDS}
    members(first: $first, after: $after) { edges { node { userId addedAt } } pageInfo { hasNextPage endCursor } }
  }
}`;
const CHANGED = `__typename ... on TopicMembersChanged { key changed memberCount } ${ERROR_FIELDS}`;
const ADD = `mutation AddToTopic($key: String!, $userIds: [String!]!) { addToTopic(key: $key, userIds: $userIds) { ${CHANGED} } }`;
const REMOVE = `mutation RemoveFromTopic($key: String!, $userIds: [String!]!) { removeFromTopic(key: $key, userIds: $userIds) { ${CHANGED} } }`;
const DELETE = `mutation DeleteTopic($key: String!) { deleteTopic(key: $key) { __typename ... on TopicDeleted { key } ${ERROR_FIELDS} } }`;

export function render(root, { params, ctx }) {
  const key = params.key;
  let disposed = false;
  let cursor = null;
  let seq = 0;
  let topic = null;
  const selected = new Set();

  const title = h("span", { class: "mono" }, key);
  const banner = h("div", { class: "banner-slot", hidden: true });
  const facts = h("dl", { class: "facts", id: "topic-facts" });
  const count = h("span", { id: "topic-member-count", class: "badge" });
  const edit = h("button", { type: "button", class: "btn small", id: "topic-edit" }, "Edit");
  const remove = h("button", { type: "button", class: "btn small danger-ghost", id: "topic-delete" }, "Delete");

  // Adding members
  const idsInput = h("textarea", { id: "topic-add-ids", rows: "3", spellcheck: "false", placeholder: "user ids, separated by commas, spaces or new lines", "aria-describedby": "topic-add-help topic-add-error" });
  const idsError = h("p", { id: "topic-add-error", class: "field-error", role: "alert", hidden: true });
  const addButton = h("button", { type: "submit", class: "btn primary", id: "topic-add" }, "Add members");
  const addForm = h(
    "form",
    { class: "card", id: "topic-add-form", novalidate: true },
    h("label", { for: "topic-add-ids" }, "Add members"),
    idsInput,
    h("p", { id: "topic-add-help", class: "help" }, "Up to 1,000 ids at a time; those already in the topic are left as they are."),
    idsError,
    h("div", { class: "actions" }, addButton),
  );

  // Members
  const outcome = h("div", { id: "topic-outcome", "aria-live": "polite" });
  const selectAll = h("input", { type: "checkbox", id: "members-select-all", "aria-label": "Select all members shown" });
  const body = h("tbody");
  const tableWrap = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "table", id: "members-table" },
      h("caption", { class: "visually-hidden" }, "Members, by user id."),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "check" }, selectAll), h("th", { scope: "col" }, "User id"), h("th", { scope: "col" }, "Added"))),
      body,
    ),
  );
  const empty = h("div", { hidden: true });
  const removeSelected = h("button", { type: "button", class: "btn danger-ghost", id: "members-remove", disabled: true }, "Remove selected");
  const status = h("p", { class: "list-status", id: "members-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", id: "members-more", hidden: true }, "Load more");

  setChildren(
    root,
    h("p", {}, h("a", { href: "#/topics", class: "small-link" }, "← All topics")),
    h("div", { class: "page-head" }, pageTitle("Topic ", title), count, h("div", { class: "head-actions" }, edit, remove)),
    h(
      "div",
      { class: "topic-body" },
      banner,
      h("div", { class: "card" }, facts),
      addForm,
      outcome,
      h("div", { class: "page-head" }, h("h2", {}, "Members"), removeSelected),
    ),
    tableWrap,
    empty,
    h("div", { class: "list-foot" }, status, more),
  );

  function showTopic(t) {
    topic = t;
    title.textContent = t.key;
    count.textContent = memberWords(t.memberCount);
    count.dataset.count = String(t.memberCount);
    setChildren(
      facts,
      h("dt", {}, "Name"),
      h("dd", { id: "topic-name-value" }, t.name, " ", selfServiceBadge(t)),
      h("dt", {}, "Description"),
      h("dd", {}, t.description || h("span", { class: "muted" }, "—")),
      h("dt", {}, "Self-service"),
      h("dd", {}, t.selfService ? "Users may join and leave it themselves." : "No: only managers and services change its members."),
      h("dt", {}, "Created"),
      h("dd", {}, formatDateTime(t.createdAt)),
    );
  }

  function syncSelection() {
    removeSelected.disabled = selected.size === 0;
    removeSelected.textContent = selected.size ? `Remove selected (${selected.size})` : "Remove selected";
    const boxes = body.querySelectorAll("input[type=checkbox]");
    selectAll.checked = boxes.length > 0 && [...boxes].every((b) => b.checked);
  }

  async function load({ append = false } = {}) {
    const mine = ++seq;
    if (!append) {
      cursor = null;
      selected.clear();
      setChildren(body, h("tr", {}, h("td", { colspan: "3" }, spinner("Loading members…"))));
    }
    setBanner(banner, null);
    let found;
    try {
      found = (await graphql(TOPIC, { key, first: PAGE, after: append ? cursor : null })).topic;
    } catch (error) {
      if (mine !== seq || disposed) return;
      setBanner(banner, error, { retry: () => load({ append }) });
      return;
    }
    if (mine !== seq || disposed) return;
    if (!found) {
      setChildren(root, h("div", { class: "page-head" }, pageTitle("Topic not found")), emptyState(`There is no topic ${key}.`, "It may have been deleted.", h("a", { class: "btn", href: "#/topics" }, "All topics")));
      return;
    }
    showTopic(found);
    if (!append) setChildren(body);
    for (const { node } of found.members.edges) body.append(row(node));
    cursor = found.members.pageInfo.endCursor;
    more.hidden = !found.members.pageInfo.hasNextPage;
    const shown = body.querySelectorAll("tr").length;
    tableWrap.hidden = !shown;
    empty.hidden = Boolean(shown);
    setChildren(empty, shown ? null : emptyState("No members yet.", "Paste user ids above to add them."));
    status.textContent = shown ? `Showing ${shown} of ${memberWords(found.memberCount)}.` : "";
    syncSelection();
  }

  function row(member) {
    const box = h("input", { type: "checkbox", "aria-label": `Select ${member.userId}`, value: member.userId });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(member.userId);
      else selected.delete(member.userId);
      syncSelection();
    });
    return h("tr", { "data-user-id": member.userId }, h("td", { class: "check" }, box), h("td", { class: "mono" }, member.userId), h("td", {}, formatDateTime(member.addedAt)));
  }

  selectAll.addEventListener("change", () => {
    for (const box of body.querySelectorAll("input[type=checkbox]")) {
      box.checked = selectAll.checked;
      if (box.checked) selected.add(box.value);
      else selected.delete(box.value);
    }
    syncSelection();
  });

  function report(changed, verb) {
    const users = `${changed.changed.toLocaleString()} user${changed.changed === 1 ? "" : "s"}`;
    setChildren(
      outcome,
      h("div", { class: "alert alert-success", role: "status", id: "topic-changed", "data-changed": String(changed.changed) }, h("p", {}, `${verb} ${users}; the topic has ${memberWords(changed.memberCount)}.`)),
    );
    ctx.toast(`${verb} ${users}.`);
  }

  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    showFieldError(idsError, "", idsInput);
    setChildren(outcome);
    const ids = splitIds(idsInput.value);
    if (!ids.length) {
      showFieldError(idsError, "Paste one or more user ids.", idsInput);
      idsInput.focus();
      return;
    }
    await withProgress(addButton, "Adding…", async () => {
      try {
        const changed = unwrap((await graphql(ADD, { key, userIds: ids })).addToTopic, "TopicMembersChanged");
        if (disposed) return;
        idsInput.value = "";
        report(changed, "Added");
        await load();
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (disposed) return;
        showFieldError(idsError, describeError(error), idsInput);
        idsInput.focus();
      }
    });
  });

  removeSelected.addEventListener("click", async () => {
    await withProgress(removeSelected, "Removing…", async () => {
      setChildren(outcome);
      try {
        const changed = unwrap((await graphql(REMOVE, { key, userIds: [...selected] })).removeFromTopic, "TopicMembersChanged");
        if (disposed) return;
        report(changed, "Removed");
        await load();
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (!disposed) setBanner(banner, error);
      }
    });
    // withProgress gives the button back enabled: it stays so only while something is selected.
    syncSelection();
  });

  edit.addEventListener("click", () => {
    if (!topic) return;
    openTopicForm({
      topic,
      onSaved: (saved) => {
        showTopic(saved);
        ctx.toast(`Topic ${saved.key} saved.`);
      },
    });
  });

  remove.addEventListener("click", () => {
    const confirm = h("button", { type: "button", class: "btn danger", id: "topic-delete-confirm" }, "Delete topic");
    const keep = h("button", { type: "button", class: "btn ghost" }, "Keep it");
    const slot = h("div", { class: "banner-slot", hidden: true });
    const members = topic ? memberWords(topic.memberCount) : "its members";
    const { close } = openDialog({
      id: "topic-delete-dialog",
      title: `Delete topic ${key}?`,
      body: h("div", {}, slot, h("p", {}, `The topic and its ${members} are deleted. Sends and campaigns that name it will fail with “not found”.`)),
      actions: [keep, confirm],
    });
    keep.addEventListener("click", close);
    keep.focus();
    confirm.addEventListener("click", () =>
      withProgress(confirm, "Deleting…", async () => {
        try {
          unwrap((await graphql(DELETE, { key })).deleteTopic, "TopicDeleted");
          close();
          ctx.toast(`Topic ${key} deleted.`);
          ctx.navigate("#/topics");
        } catch (error) {
          if (!(error instanceof ApiError)) throw error;
          setBanner(slot, error);
        }
      }),
    );
  });

  more.addEventListener("click", () => withProgress(more, "Loading…", () => load({ append: true })));
  load();
  return () => {
    disposed = true;
    seq++;
  };
}
