// A secret shown in a read-only box with a Copy button: an API key when it is made, a webhook
// endpoint's signing secret.

import { h } from "./dom.js";

/**
 * The box for `value`, labelled `label`; its elements' ids start with `prefix`
 * (`<prefix>-secret`, `<prefix>-copy`, `<prefix>-copied`). `describedBy` names the help the
 * box refers to. Returns the field and `focus()`, which selects the secret.
 */
export function secretBox({ prefix, label, value, describedBy }) {
  const input = h("input", { id: `${prefix}-secret`, class: "mono", readonly: true, value, "aria-describedby": describedBy });
  const copy = h("button", { type: "button", class: "btn", id: `${prefix}-copy` }, "Copy");
  const copied = h("span", { class: "help", id: `${prefix}-copied`, "aria-live": "polite" });
  copy.addEventListener("click", async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(value);
      copied.textContent = "Copied.";
    } catch {
      copied.textContent = "Select the secret and copy it (the browser did not allow copying).";
    }
  });
  const field = h("div", { class: "field secret-row" }, h("label", { for: input.id }, label), h("div", { class: "inline" }, input, copy), copied);
  return {
    field,
    focus() {
      input.focus();
      input.select();
    },
  };
}
