// The password policy (PROTOCOL.md: 8-128 characters, lower, upper, digit, special),
// checked as the user types. Shared by the enrollment wizard and the password-reset page.
"use strict";
window.OnrampPassword = (() => {
  const RULES = [
    ["at least 8 characters", (p) => [...p].length >= 8],
    ["at most 128 characters", (p) => [...p].length <= 128],
    ["a lower-case letter", (p) => /\p{Ll}/u.test(p)],
    ["an upper-case letter", (p) => /\p{Lu}/u.test(p)],
    ["a digit", (p) => /[0-9]/.test(p)],
    ["a special character", (p) => /[^\p{L}\p{N}\s]/u.test(p)],
  ];

  // Lists the rules (met ones marked) in `list` and enables `submit` only when all are met
  // and the repeat matches.
  function check(password, repeat, list, submit) {
    const p = password.value;
    list.replaceChildren(...RULES.map(([label, ok]) => {
      const li = document.createElement("li");
      li.textContent = label;
      if (ok(p)) li.className = "ok";
      return li;
    }));
    submit.disabled = !(RULES.every(([, ok]) => ok(p)) && p === repeat.value);
  }

  return { RULES, check };
})();
