// Herald's dashboard: small enhancements. Every page works without them.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons copy the text of the element they name.
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }

  // "Select all" ticks every row box of the same form.
  for (const all of document.querySelectorAll("[data-select-all]")) {
    all.addEventListener("change", () => {
      const boxes = all.form.querySelectorAll(`input[type=checkbox][name="${all.dataset.selectAll}"]`);
      for (const box of boxes) box.checked = all.checked;
    });
  }

  // The event tree: shown only for "only the events I choose"; a group's
  // box ticks or clears its events and shows whether some are ticked.
  const tree = document.querySelector("[data-tree]");
  if (tree) {
    const form = tree.closest("form");
    const some = form.querySelector("input[name=events_mode][value=some]");
    const showTree = () => { tree.hidden = !some.checked; };
    for (const radio of form.querySelectorAll("input[name=events_mode]")) radio.addEventListener("change", showTree);
    showTree();
    for (const group of tree.querySelectorAll("[data-group]")) {
      const members = [...tree.querySelectorAll("[data-member]")].filter((m) => m.dataset.member === group.dataset.group);
      const reflect = () => {
        const ticked = members.filter((m) => m.checked).length;
        group.checked = ticked > 0 && ticked === members.length;
        group.indeterminate = ticked > 0 && ticked < members.length;
      };
      group.addEventListener("change", () => { for (const m of members) m.checked = group.checked; });
      for (const m of members) m.addEventListener("change", reflect);
      reflect();
    }
  }

  // A typed secret only when "use my own" is chosen.
  const secret = document.getElementById("secret");
  if (secret) {
    const own = document.querySelector("input[name=secret_mode][value=own]");
    const reflect = () => { secret.disabled = !own.checked; };
    for (const radio of document.querySelectorAll("input[name=secret_mode]")) radio.addEventListener("change", reflect);
    reflect();
  }

  // A portal link carries its token in the fragment, which browsers never
  // send to a server: read it here, drop it from the address bar, sign in.
  const login = document.getElementById("login-form");
  if (login && location.hash.startsWith("#token=")) {
    const token = decodeURIComponent(location.hash.slice("#token=".length));
    history.replaceState(null, "", location.pathname + location.search);
    login.querySelector("[name=token]").value = token;
    login.submit();
  }
});
