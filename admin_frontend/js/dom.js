// Building DOM without innerHTML: every string from the API becomes a text node, so a template
// body or an error message can never inject markup into the admin page.

const BOOLEAN_ATTRS = new Set(["disabled", "hidden", "checked", "required", "readonly", "open", "selected", "multiple"]);

/** h("button", {class: "btn", onclick: fn}, "Save") -> HTMLButtonElement */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value") {
      el.value = value;
    } else if (BOOLEAN_ATTRS.has(name)) {
      el[name] = true;
      if (name !== "checked" && name !== "selected") el.setAttribute(name, "");
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function setChildren(el, ...children) {
  clear(el);
  return append(el, children);
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

export function formatDateTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateTime.format(date);
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : timeOnly.format(date);
}

export function localTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "your local time";
}

/** A value for <input type="datetime-local"> from an ISO string, in the browser's zone. */
export function toLocalInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** An ISO instant from a datetime-local value, read in the browser's zone; null when empty. */
export function fromLocalInput(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

export const CHANNELS = [
  { value: "EMAIL", label: "Email" },
  { value: "SMS", label: "SMS" },
  { value: "PUSH", label: "Push" },
  { value: "IN_APP", label: "In-app" },
  { value: "PUSH_MOBILE", label: "Mobile push" },
  { value: "SLACK", label: "Slack" },
  { value: "TELEGRAM", label: "Telegram" },
  { value: "DISCORD", label: "Discord" },
  { value: "TEAMS", label: "Teams" },
  { value: "WEBHOOK", label: "Webhook" },
];

export function channelLabel(value) {
  return CHANNELS.find((c) => c.value === value)?.label ?? value;
}

export const STATUSES = [
  { value: "QUEUED", label: "Queued" },
  { value: "SENDING", label: "Sending" },
  { value: "SENT", label: "Sent" },
  { value: "DELIVERED", label: "Delivered" },
  { value: "FAILED", label: "Failed, retrying" },
  { value: "SKIPPED", label: "Skipped" },
  { value: "DEAD", label: "Failed for good" },
  { value: "BOUNCED", label: "Bounced" },
  { value: "COMPLAINED", label: "Marked as spam" },
];

export function statusBadge(status) {
  const label = STATUSES.find((s) => s.value === status)?.label ?? status;
  return h("span", { class: `badge status-${String(status).toLowerCase()}` }, label);
}

export const CAMPAIGN_STATUSES = [
  { value: "DRAFT", label: "Draft" },
  { value: "SCHEDULED", label: "Scheduled" },
  { value: "RUNNING", label: "Running" },
  { value: "PAUSED", label: "Paused" },
  { value: "COMPLETED", label: "Completed" },
  { value: "CANCELLED", label: "Cancelled" },
];

export function campaignBadge(status) {
  const label = CAMPAIGN_STATUSES.find((s) => s.value === status)?.label ?? status;
  return h("span", { class: `badge campaign-${String(status).toLowerCase()}` }, label);
}

const SVG = "http://www.w3.org/2000/svg";

/** Like h(), for inline SVG: svg("rect", {x: 0, width: 10}) */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A page heading that takes focus after navigation, so keyboard users start at the top. */
export function pageTitle(text, ...extra) {
  return h("h1", { tabindex: "-1", class: "page-title" }, text, ...extra);
}

/** A friendly empty state: a title, a sentence, and optionally an action. */
export function emptyState(title, text, action) {
  return h("div", { class: "empty-state", role: "status" }, h("p", { class: "empty-title" }, title), h("p", {}, text), action);
}

export function spinner(label = "Loading…") {
  return h("span", { class: "progress" }, h("span", { class: "spinner", "aria-hidden": "true" }), label);
}

/** Mark a button busy while `work` runs: disabled, with a progress label. */
export async function withProgress(button, label, work) {
  const original = [...button.childNodes];
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  setChildren(button, h("span", { class: "spinner", "aria-hidden": "true" }), label);
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    setChildren(button, ...original);
  }
}

/** User ids (or topic keys) pasted separated by commas, semicolons, spaces or new lines. */
export function splitIds(text) {
  return text.split(/[\s,;]+/).filter(Boolean);
}

export function parseQuery(query) {
  const params = {};
  for (const [key, value] of new URLSearchParams(query || "")) params[key] = value;
  return params;
}

export function buildQuery(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
