// Onramp password-reset page: the link from the reset e-mail opens the reset session with
// its token, then the new password is checked as it is typed and submitted. The session
// rides on its own cookie (not the enrollment one), set by the edge at start.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let timer = null;

  // A specific sentence for each way a reset link can fail.
  const MESSAGES = {
    token_expired: "This password-reset link has expired. Request a new one below.",
    token_used: "This password-reset link was already used, so the password was already changed with it. Request a new link if you need to change it again.",
    token_revoked: "This password-reset link was replaced by a newer one. Use the link in the most recent e-mail, or request a new one.",
    invalid_token: "This password-reset link is not valid. Check that the whole link was copied from the e-mail, or request a new one.",
    session_expired: "The time to choose a new password has run out. Open the link again if it is still valid, or request a new one.",
    user_disabled: "This account is disabled. Contact your administrator.",
  };

  function show(step) {
    document.querySelectorAll("section[data-step]").forEach((s) => { s.hidden = s.dataset.step !== step; });
    $("inline-error").hidden = true;
    const section = document.querySelector(`section[data-step="${step}"]`);
    (section.querySelector("input, button") || section).focus();
  }

  const api = OnrampCommon.api;

  function stopTimer() {
    if (timer) clearInterval(timer);
    timer = null;
    $("countdown").hidden = true;
  }

  function fail(e) {
    const data = (e && e.data) || {};
    if (e && e.status === 400 && !MESSAGES[data.code]) {
      $("inline-error").textContent = data.error || "The request was refused.";
      $("inline-error").hidden = false;
      return;
    }
    let text = MESSAGES[data.code] || data.error || "The service is not reachable. Try again in a moment.";
    if (e && e.status === 429) text = "Too many attempts. Wait a moment and try again.";
    $("error-text").textContent = text;
    $("error-text").dataset.code = data.code || "";
    stopTimer();
    show("error");
  }

  function startTimer(deadline) {
    stopTimer();
    const tick = () => {
      const left = Math.max(0, deadline - Math.floor(Date.now() / 1000));
      $("countdown").textContent = `Time left: ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
      $("countdown").classList.toggle("urgent", left < 120);
      if (left === 0) fail({ status: 401, data: { code: "session_expired" } });
    };
    $("countdown").hidden = false;
    tick();
    timer = setInterval(tick, 1000);
  }

  async function start(token) {
    try {
      const r = await api("password-reset/start", { token: token.trim() });
      startTimer(r.deadline_timestamp);
      show("password");
    } catch (e) { fail(e); }
  }

  const check = () => OnrampPassword.check($("password"), $("password2"), $("rules"), $("password-submit"));

  document.addEventListener("DOMContentLoaded", () => {
    $("password").addEventListener("input", check);
    $("password2").addEventListener("input", check);
    check();
    $("password-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("password-reset/reset", { password: $("password").value });
        stopTimer();
        show("done");
      } catch (e) { fail(e); }
    });
    $("request-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("password-reset/request", { email: $("email").value.trim() });
        show("requested");
      } catch (e) { fail(e); }
    });
    $("error-restart").addEventListener("click", () => show("request"));
    const token = new URLSearchParams(location.search).get("token");
    if (token) {
      // Keep the token out of the history and of any referrer.
      history.replaceState(null, "", location.pathname);
      start(token);
    } else {
      show("request");
    }
  });
})();
