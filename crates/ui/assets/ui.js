// Onramp admin UI: small enhancements on top of server-rendered pages. Every page works
// without this file; with it, dialogs open in place and copy buttons copy.
"use strict";
(() => {
  const dialog = () => document.getElementById("dialog");
  // The control that opened the dialog gets the focus back when it closes.
  let opener = null;
  document.addEventListener("htmx:beforeRequest", (e) => {
    const d = dialog();
    if (d && e.detail.target === d) opener = e.detail.elt;
  });
  document.addEventListener("close", (e) => {
    if (e.target === dialog() && opener && document.contains(opener)) opener.focus();
  }, true);

  // htmx swapped a dialog body into <dialog id="dialog">: show it as a modal.
  document.addEventListener("htmx:afterSwap", (e) => {
    const d = dialog();
    if (d && e.detail.target === d && !d.open) {
      document.querySelectorAll("details.menu[open]").forEach((m) => { m.open = false; });
      d.showModal();
      const first = d.querySelector("input:not([type=hidden]):not([disabled]), button, a");
      if (first) first.focus();
    }
  });

  document.addEventListener("click", (e) => {
    const t = e.target instanceof Element ? e.target : null;
    if (!t) return;
    // "Cancel" / "Close" inside the modal closes it instead of navigating away.
    const close = t.closest("[data-close-dialog]");
    const d = dialog();
    if (close && d && d.open && d.contains(close)) {
      e.preventDefault();
      d.close();
      d.replaceChildren();
      return;
    }
    const copy = t.closest("button[data-copy]");
    if (copy) {
      const field = document.getElementById(copy.dataset.copy);
      if (!field) return;
      field.select();
      const done = () => { copy.textContent = "Copied"; setTimeout(() => { copy.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, () => { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    }
  });

  // Close an open action menu when another opens or on Escape.
  document.addEventListener("toggle", (e) => {
    const t = e.target;
    if (t instanceof HTMLDetailsElement && t.classList.contains("menu") && t.open) {
      document.querySelectorAll("details.menu[open]").forEach((m) => { if (m !== t) m.open = false; });
    }
  }, true);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") document.querySelectorAll("details.menu[open]").forEach((m) => { m.open = false; });
  });

  // Settings: live preview of the welcome message with the wizard's own renderer. The page
  // loads markdown.js with `defer` after this file, so wait until every script has run.
  let previewing = false;
  const preview = () => {
    const source = document.getElementById("f-welcome_message");
    const target = document.getElementById("welcome-preview");
    if (previewing || !source || !target || typeof onrampMarkdown !== "function") return;
    previewing = true;
    const render = () => { target.innerHTML = onrampMarkdown(source.value); };
    source.addEventListener("input", render);
    render();
  };
  if (document.readyState === "complete") preview();
  else {
    document.addEventListener("DOMContentLoaded", preview);
    window.addEventListener("load", preview);
  }
})();
