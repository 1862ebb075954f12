// Onramp browser enrollment wizard. No framework, no CDN. The WireGuard private key is
// generated here (WebCrypto X25519) and only ever placed into files the user downloads.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { token: null, start: null, timer: null, privateKey: null };

  // What each failure means for the person in front of the screen.
  const MESSAGES = {
    token_expired: "This enrollment link has expired.",
    token_used: "This enrollment link was already used.",
    token_revoked: "This enrollment link was replaced by a newer one.",
    invalid_token: "This enrollment token is not valid. Check that it was copied completely.",
    session_expired: "Your enrollment session has ended (it lasts a limited time).",
    user_disabled: "Your account is disabled.",
  };

  function show(step) {
    document.querySelectorAll("section[data-step]").forEach((s) => { s.hidden = s.dataset.step !== step; });
    $("inline-error").hidden = true;
    const section = document.querySelector(`section[data-step="${step}"]`);
    const target = section.querySelector("input:not([readonly]), button, textarea") || section;
    target.focus();
  }

  const api = OnrampCommon.api;

  function fail(e) {
    const data = (e && e.data) || {};
    const code = data.code;
    if (e && e.status === 400 && !MESSAGES[code]) {
      $("inline-error").textContent = data.error || "The request was refused.";
      $("inline-error").hidden = false;
      return;
    }
    let text = MESSAGES[code] || data.detail || data.error || "The enrollment service is not reachable. Try again in a moment.";
    if (e && e.status === 429) text = "Too many attempts. Wait a moment and try again.";
    $("error-text").textContent = text + " Ask your administrator for a new enrollment link if this persists.";
    const admin = state.start && state.start.admin;
    $("error-admin").hidden = !admin;
    if (admin) {
      $("error-admin").textContent = `Administrator: ${admin.name}, ${admin.email}${admin.phone_number ? ", " + admin.phone_number : ""}`;
    }
    stopTimer();
    show("error");
  }

  function facts(dl, rows) {
    dl.replaceChildren();
    for (const [k, v] of rows) {
      if (!v) continue;
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }
  }

  function stopTimer() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    $("countdown").hidden = true;
  }

  function startTimer(deadline) {
    stopTimer();
    const tick = () => {
      const left = Math.max(0, deadline - Math.floor(Date.now() / 1000));
      const m = Math.floor(left / 60), s = String(left % 60).padStart(2, "0");
      $("countdown").textContent = `Time left: ${m}:${s}`;
      $("countdown").classList.toggle("urgent", left < 120);
      if (left === 0) fail({ status: 401, data: { code: "session_expired" } });
    };
    $("countdown").hidden = false;
    tick();
    state.timer = setInterval(tick, 1000);
  }

  async function start(token) {
    state.token = token.trim();
    try {
      const s = await api("enrollment/start", { token: state.token });
      state.start = s;
      $("title").textContent = `VPN enrollment: ${s.instance.name}`;
      facts($("user-data"), [
        ["Name", `${s.user.first_name} ${s.user.last_name}`],
        ["Login", s.user.login],
        ["E-mail", s.user.email],
        ["Phone", s.user.phone_number],
        ["Devices", s.user.device_names.join(", ")],
      ]);
      $("admin-box").hidden = !s.admin;
      if (s.admin) facts($("admin-data"), [["Name", s.admin.name], ["E-mail", s.admin.email], ["Phone", s.admin.phone_number]]);
      const url = location.origin + "/";
      $("deep-link").href = `onramp://enroll?url=${encodeURIComponent(url)}&token=${encodeURIComponent(state.token)}`;
      $("instance-url").value = url;
      $("instance-token").value = state.token;
      $("skip-vpn").hidden = !s.settings.vpn_setup_optional;
      startTimer(s.deadline_timestamp);
      show("welcome");
    } catch (e) {
      fail(e);
    }
  }

  // The policy check as you type, shared with the password-reset page (password.js).
  const checkPassword = () => OnrampPassword.check($("password"), $("password2"), $("rules"), $("password-submit"));

  const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
  const fromB64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

  async function keyPair() {
    const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
    const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
    return { privateKey: b64(fromB64url(jwk.d)), publicKey: b64(fromB64url(jwk.x)) };
  }

  function renderConfigs(configs) {
    const list = $("config-list");
    list.replaceChildren();
    for (const c of configs) {
      const text = state.privateKey ? c.config.replace("YOUR_PRIVATE_KEY", state.privateKey) : c.config;
      const box = document.createElement("div");
      box.className = "config";
      const h = document.createElement("h3");
      h.textContent = c.network_name;
      const pre = document.createElement("pre");
      pre.className = "wg-config";
      pre.dataset.network = c.network_name;
      pre.textContent = text;
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
      a.download = `${c.network_name.replace(/[^A-Za-z0-9_-]+/g, "_")}.conf`;
      a.textContent = `Download ${a.download}`;
      box.append(h, a, pre);
      if (window.qrcode) {
        const qr = qrcode(0, "M");
        qr.addData(text);
        qr.make();
        const img = document.createElement("img");
        img.src = qr.createDataURL(4, 4);
        img.alt = `QR code of the ${c.network_name} configuration`;
        box.append(img);
      }
      list.append(box);
    }
  }

  function finish() {
    stopTimer();
    $("final-page").innerHTML = onrampMarkdown(state.start.final_page_content || "");
    show("done");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (ev) => { ev.preventDefault(); start($("token").value); });
    $("welcome-next").addEventListener("click", () => show(state.start.user.enrolled ? "device" : "password"));
    $("copy-token").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(`${$("instance-url").value}\n${state.token}`));
    $("password").addEventListener("input", checkPassword);
    $("password2").addEventListener("input", checkPassword);
    $("password-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("enrollment/activate_user", { password: $("password").value, phone_number: $("phone").value || null });
        state.start.user.enrolled = true;
        show("device");
      } catch (e) { fail(e); }
    });
    document.querySelectorAll('input[name="keymode"]').forEach((r) => r.addEventListener("change", () => {
      $("own-pubkey").hidden = r.value !== "paste" || !r.checked;
    }));
    $("device-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        let pubkey;
        if (document.querySelector('input[name="keymode"]:checked').value === "paste") {
          pubkey = $("own-pubkey").value.trim();
          state.privateKey = null;
        } else {
          const keys = await keyPair();
          state.privateKey = keys.privateKey;
          pubkey = keys.publicKey;
        }
        const r = await api("enrollment/create_device", { name: $("device-name").value, pubkey });
        renderConfigs(r.configs);
        show("configs");
      } catch (e) {
        if (e instanceof DOMException || e instanceof TypeError) {
          $("inline-error").textContent = "This browser cannot generate a WireGuard key (WebCrypto X25519). Paste your own public key instead.";
          $("inline-error").hidden = false;
        } else { fail(e); }
      }
    });
    $("skip-vpn").addEventListener("click", finish);
    $("configs-next").addEventListener("click", finish);
    $("error-restart").addEventListener("click", () => show("token"));
    const params = new URLSearchParams(location.search);
    const token = params.get("token");
    if (token) {
      // Keep the token out of the history and of any referrer.
      history.replaceState(null, "", location.pathname);
      start(token);
    } else {
      show("token");
    }
  });
})();
