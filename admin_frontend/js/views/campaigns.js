// Campaigns: the API has no campaigns yet, so this screen says what will be here and shows no
// data. It becomes a list (status filters) and a detail view (runs, per-channel counts, pause,
// resume, cancel, test send) when the campaign API lands.

import { h, pageTitle, setChildren } from "../dom.js";

export function render(root) {
  setChildren(
    root,
    h("div", { class: "page-head" }, pageTitle("Campaigns ", h("span", { class: "badge soon" }, "coming with campaigns"))),
    h(
      "div",
      { class: "empty-state", id: "campaigns-soon" },
      h("p", { class: "empty-title" }, "Campaigns are not available yet."),
      h("p", {}, "Herald cannot plan recurring sends yet. When it can, this screen will list your campaigns by status and show each one's runs, with pause, resume, cancel and a test send."),
      h(
        "p",
        {},
        "Today you can send a message now or at a set time from ",
        h("a", { href: "#/send" }, "Send a message"),
        ", and follow every delivery in ",
        h("a", { href: "#/history" }, "History"),
        ".",
      ),
    ),
  );
}
