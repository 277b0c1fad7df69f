// Modal dialogs on the native <dialog> element: it traps focus, closes on Escape, and gives
// focus back to what opened it.

import { h, withProgress } from "./dom.js";
import { ApiError, setBanner } from "./errors.js";

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

/**
 * Ask before a destructive action: `text` with Cancel (focused) and a danger button labelled
 * `action` (id `confirmId`). The button runs `run()`, showing `progress`; an API error is shown
 * in the dialog, which stays open; on success the dialog closes and `onDone(result)` runs.
 */
export function confirmDanger({ id, title, text, action, confirmId, progress, run, onDone }) {
  const banner = h("div", { class: "banner-slot", hidden: true });
  const confirm = h("button", { type: "button", class: "btn danger", id: confirmId }, action);
  const cancel = h("button", { type: "button", class: "btn ghost" }, "Cancel");
  const { close } = openDialog({ id, title, body: h("div", {}, banner, h("p", {}, text)), actions: [cancel, confirm] });
  cancel.addEventListener("click", close);
  cancel.focus();
  confirm.addEventListener("click", () =>
    withProgress(confirm, progress, async () => {
      let result;
      try {
        result = await run();
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        setBanner(banner, error);
        return;
      }
      close();
      onDone(result);
    }),
  );
}
