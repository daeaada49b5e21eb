// flashmart pages: the JSON API from the browser. The signed-in user's token and a guest's cart id
// live in localStorage; every call sends them, so the pages hold no business rule of their own.
"use strict";

const FM = (() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const store = {
    get token() { return localStorage.getItem("fm.token"); },
    get user() { try { return JSON.parse(localStorage.getItem("fm.user")); } catch (e) { return null; } },
    get cartId() { return localStorage.getItem("fm.cart"); },
    signIn(tokens) {
      localStorage.setItem("fm.token", tokens.access_token);
      localStorage.setItem("fm.user", JSON.stringify(tokens.user));
      localStorage.removeItem("fm.cart");
    },
    signOut() { ["fm.token", "fm.user"].forEach(k => localStorage.removeItem(k)); },
    setCart(id) { if (!this.token && id && id.startsWith("g")) localStorage.setItem("fm.cart", id); },
  };

  class ApiError extends Error {
    constructor(status, body) {
      super(body.message || body.error || `HTTP ${status}`);
      this.status = status; this.body = body; this.reason = body.error;
    }
  }

  async function api(method, path, body, headers = {}) {
    const h = { Accept: "application/json", ...headers };
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (store.token) h.Authorization = `Bearer ${store.token}`;
    else if (store.cartId) h["X-Cart-Id"] = store.cartId;
    const r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { message: text }; }
    if (r.status === 401 && store.token) { store.signOut(); }
    if (!r.ok) throw new ApiError(r.status, data);
    if (data && data.cart_id) store.setCart(data.cart_id);
    return data;
  }

  // Server-sent events over fetch, so the request carries the token (EventSource cannot).
  async function events(path, onEvent, signal) {
    const h = { Accept: "text/event-stream" };
    if (store.token) h.Authorization = `Bearer ${store.token}`;
    const r = await fetch(path, { headers: h, signal });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => ({})));
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  }

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  function esc(v) {
    return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  const money = v => (v === null || v === undefined) ? "" : `$${Number(v).toFixed(2)}`;
  const when = iso => iso ? new Date(iso).toLocaleString() : "";

  // One status line per page, announced to screen readers (role=status / alert).
  function say(text, kind = "info") {
    const box = $("#status");
    if (!box) return;
    box.textContent = text;
    box.className = `status ${kind}`;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
  }
  function fail(e) { say(e.message || String(e), "error"); }

  function nav() {
    const who = $("#who");
    if (!who) return;
    const u = store.user;
    who.innerHTML = u
      ? `${esc(u.email)} (${esc(u.role)}) <button type="button" class="link" id="sign-out">Sign out</button>`
      : `<a href="/shop/account">Sign in</a>`;
    const out = $("#sign-out");
    if (out) out.onclick = () => { store.signOut(); location.href = `/${page.app === "shop" ? "shop" : page.app}`; };
  }

  // <form data-api="POST /api/v1/..."> : the fields become the JSON body (data-type casts a field:
  // int, float, bool, json, list); {name} in the path takes that field's value; the answer is shown
  // in the element named by data-out (as a table when it is a list of rows).
  function fieldValue(el) {
    const t = el.dataset.type;
    if (el.type === "checkbox") return el.checked;
    const v = el.value.trim();
    if (v === "") return undefined;
    if (t === "int") return parseInt(v, 10);
    if (t === "float") return parseFloat(v);
    if (t === "json") return JSON.parse(v);
    if (t === "list") return v.split(",").map(s => s.trim()).filter(Boolean);
    if (t === "datetime") return new Date(v).toISOString();
    return v;
  }
  function bindForms(root = document) {
    for (const form of $$("form[data-api]", root)) {
      form.addEventListener("submit", async ev => {
        ev.preventDefault();
        const [method, template] = form.dataset.api.split(" ");
        const body = {}, used = new Set();
        const path = template.replace(/\{(\w+)\}/g, (_, k) => { used.add(k); return encodeURIComponent(form.elements[k].value.trim()); });
        let query = [];
        for (const el of form.elements) {
          if (!el.name || used.has(el.name)) continue;
          let v;
          try { v = fieldValue(el); } catch (e) { say(`${el.name}: ${e.message}`, "error"); return; }
          if (v === undefined) continue;
          if (method === "GET") query.push(`${encodeURIComponent(el.name)}=${encodeURIComponent(v)}`);
          else body[el.name] = v;
        }
        const headers = form.dataset.idempotent ? { "Idempotency-Key": crypto.randomUUID() } : {};
        try {
          const out = await api(method, path + (query.length ? `?${query.join("&")}` : ""), method === "GET" ? undefined : body, headers);
          say(form.dataset.done || "Done.", "ok");
          const target = form.dataset.out && document.getElementById(form.dataset.out);
          if (target) show(target, out);
          form.dispatchEvent(new CustomEvent("api:done", { detail: out }));
        } catch (e) { fail(e); }
      });
    }
  }

  // A value as HTML: a list of rows becomes a table, anything else a definition list.
  function show(target, value) {
    const rows = Array.isArray(value) ? value : (value && Object.values(value).find(Array.isArray));
    if (rows && rows.length && typeof rows[0] === "object") {
      const cols = Object.keys(rows[0]);
      target.innerHTML = `<div class="scroll"><table><thead><tr>${cols.map(c => `<th scope="col">${esc(c)}</th>`).join("")}</tr></thead>` +
        `<tbody>${rows.map(r => `<tr>${cols.map(c => `<td>${esc(typeof r[c] === "object" && r[c] !== null ? JSON.stringify(r[c]) : r[c])}</td>`).join("")}</tr>`).join("")}</tbody></table></div>`;
    } else if (rows) {
      target.innerHTML = "<p>Nothing yet.</p>";
    } else {
      target.innerHTML = `<dl class="facts">${Object.entries(value || {}).map(([k, v]) =>
        `<dt>${esc(k)}</dt><dd>${esc(typeof v === "object" && v !== null ? JSON.stringify(v) : v)}</dd>`).join("")}</dl>`;
    }
  }

  document.addEventListener("DOMContentLoaded", () => { nav(); bindForms(); });
  return { page, store, api, events, ApiError, $, $$, esc, money, when, say, fail, show, bindForms };
})();
