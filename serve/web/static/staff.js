// Sign-in for the staff apps (admin portal, courier app): the page shows its form until someone
// with one of the page's roles has signed in.
"use strict";

const Staff = {
  gate(roles, why) {
    const { store, $, api, fail } = FM;
    const u = store.user;
    const ok = !!(store.token && u && roles.includes(u.role));
    $("#signin").hidden = ok;
    $("#staff-only").hidden = !ok;
    if (!ok) {
      $("#signin-why").textContent = u ? `${u.email} (${u.role}) cannot use this page. ${why}` : why;
      $("#signin-form").addEventListener("submit", async ev => {
        ev.preventDefault();
        try {
          store.signIn(await api("POST", "/api/v1/auth/login", { email: $("#signin-email").value.trim(), password: $("#signin-password").value }));
          location.reload();
        } catch (e) { fail(e); }
      });
    }
    return ok ? u : null;
  },
};
