// Modal dialogs on the native <dialog> element: it traps focus, closes on Escape, and gives
// focus back to what opened it.

import { h } from "./dom.js";

/**
 * Open a dialog. `actions` are buttons the caller builds; `close()` is returned so an action
 * can close it when its work is done.
 */
export function openDialog({ title, body, actions = [], wide = false, id }) {
  const opener = document.activeElement;
  const heading = h("h2", { id: `${id || "dialog"}-title` }, title);
  const closeButton = h("button", { type: "button", class: "btn ghost small dialog-close", "aria-label": "Close" }, "✕");
  const dialog = h(
    "dialog",
    { class: wide ? "dialog wide" : "dialog", id, "aria-labelledby": heading.id },
    h("div", { class: "dialog-head" }, heading, closeButton),
    h("div", { class: "dialog-body" }, body),
    actions.length ? h("div", { class: "dialog-actions" }, actions) : null,
  );
  const close = () => dialog.close();
  closeButton.addEventListener("click", close);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}
