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
    if (t === "bool") return v === "true";
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
          // a list's refresh (data-done="") says nothing: answering late, it would erase what an
          // action on the same page just said
          if (form.dataset.done !== "") say(form.dataset.done ?? "Done.", "ok");
          const target = form.dataset.out && document.getElementById(form.dataset.out);
          if (target) show(target, out);
          form.dispatchEvent(new CustomEvent("api:done", { detail: out }));
        } catch (e) { fail(e); }
      });
    }
  }

  // A value as HTML: a list of rows becomes a table, anything else a definition list. On a list,
  // the target may ask for a way into each row: data-link="/path/{field}" (a link) or
  // data-open="form-id" (a button that fills that form's fields from the row and submits it);
  // data-key names the field the link or button is labelled with.
  const cell = v => esc(typeof v === "object" && v !== null ? JSON.stringify(v) : v);
  function rowAction(target, r) {
    const key = target.dataset.key, label = `${target.dataset.action || "Open"} ${key ? r[key] : ""}`.trim();
    if (target.dataset.link) {
      const href = target.dataset.link.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(r[k]));
      return `<td><a href="${esc(href)}">${esc(label)}</a></td>`;
    }
    if (target.dataset.open) return `<td><button type="button" class="link" data-fill='${esc(JSON.stringify(r))}' aria-label="${esc(label)}">${esc(target.dataset.action || "Open")}</button></td>`;
    return "";
  }
  function table(target, rows) {
    if (!rows.length) return '<p class="muted">None.</p>';
    if (typeof rows[0] !== "object") return `<p>${rows.map(cell).join(", ")}</p>`;
    const cols = Object.keys(rows[0]);
    const act = target.dataset.link || target.dataset.open;
    return `<div class="scroll"><table><thead><tr>${act ? '<th scope="col"><span class="skip">Action</span></th>' : ""}${cols.map(c => `<th scope="col">${esc(c)}</th>`).join("")}</tr></thead>` +
      `<tbody>${rows.map(r => `<tr>${act ? rowAction(target, r) : ""}${cols.map(c => `<td>${cell(r[c])}</td>`).join("")}</tr>`).join("")}</tbody></table></div>`;
  }
  // paging fields of a list answer are not facts worth showing
  const PAGING = new Set(["limit", "offset", "page", "total", "total_pages"]);
  function show(target, value) {
    if (Array.isArray(value)) { target.innerHTML = table(target, value); return; }
    const entries = Object.entries(value || {});
    const lists = entries.filter(([, v]) => Array.isArray(v));
    const facts = entries.filter(([k, v]) => !Array.isArray(v) && !PAGING.has(k));
    if (lists.length === 1 && !facts.length) { target.innerHTML = table(target, lists[0][1]); return; }
    // one object: its fields, then each of its lists (an order's items, a ticket's messages)
    target.innerHTML = (facts.length ? `<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${cell(v)}</dd>`).join("")}</dl>` : "") +
      lists.map(([k, v]) => `<h3>${esc(k.replace(/_/g, " "))}</h3>${table(target, v)}`).join("");
  }

  // a row's Open button: its fields fill the form the list names, which then submits
  document.addEventListener("click", ev => {
    const b = ev.target.closest && ev.target.closest("button[data-fill]");
    if (!b) return;
    const list = b.closest("[data-open]");
    const form = document.getElementById(list.dataset.open);
    const row = JSON.parse(b.dataset.fill);
    for (const el of form.elements) if (el.name && row[el.name] !== undefined && row[el.name] !== null) el.value = row[el.name];
    if (list.dataset.into) form.elements[list.dataset.into].value = row[list.dataset.key];
    form.scrollIntoView({ block: "nearest" });
    // a form that changes something (data-manual) is only filled: a person presses its button
    if (form.dataset.manual !== undefined) form.querySelector("button[type=submit]").focus();
    else form.requestSubmit();
  });

  // A file the API answers only with the token (CSV exports, invoice PDFs): fetched, then saved.
  async function download(path, filename) {
    const h = store.token ? { Authorization: `Bearer ${store.token}` } : {};
    const r = await fetch(path, { headers: h });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => ({})));
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url; a.download = filename;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  document.addEventListener("DOMContentLoaded", () => { nav(); bindForms(); });
  return { page, store, api, events, ApiError, $, $$, esc, money, when, say, fail, show, bindForms, download };
})();
