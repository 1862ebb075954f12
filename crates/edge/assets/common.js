// Shared by the enrollment wizard and the password-reset page.
"use strict";
window.OnrampCommon = (() => {
  // POSTs JSON to the edge API and returns the parsed answer; an error answer is thrown as
  // {status, data}. The page's #busy indicator shows while waiting.
  async function api(path, body) {
    const busy = document.getElementById("busy");
    busy.hidden = false;
    try {
      const r = await fetch("/api/v1/" + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
      const text = await r.text();
      const data = text ? JSON.parse(text) : null;
      if (!r.ok) throw { status: r.status, data: data || {} };
      return data;
    } finally {
      busy.hidden = true;
    }
  }

  return { api };
})();
