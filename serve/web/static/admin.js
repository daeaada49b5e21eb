// The admin portal: navigation by role, the live sale room, bulk import. Most pages are forms bound
// to the JSON API by app.js (data-api); the API decides who may do what.
"use strict";

(() => {
  const { page, store, api, events, $, $$, esc, say, fail, show } = FM;
  const STAFF = ["admin", "seller", "support"];

  function saleRoom() {
    const history = [];
    const n = v => (v === null || v === undefined) ? "–" : Number(v).toLocaleString();
    function draw(d) {
      $("#updated").textContent = new Date(d.at * 1000).toLocaleTimeString();
      $("#m-reservations").textContent = n(d.reservations_per_s);
      $("#m-held").textContent = n(d.stock.held);
      $("#m-sold").textContent = n(d.stock.sold);
      $("#m-available").textContent = n(d.stock.available);
      $("#m-waiting").textContent = d.waiting_room.open ? n(d.waiting_room.waiting) : "closed";
      $("#m-checkouts").textContent = n(d.checkouts_per_s);
      const p99 = d.p99_ms.reserve;
      $("#m-p99").textContent = p99 === null || p99 === undefined ? "–" : `≤ ${p99} ms`;
      $("#m-gateway").textContent = `${n(d.gateway.calls_per_s)} / ${n(d.gateway.limit_per_s)} per s`;
      const taken = d.stock.on_hand ? (d.stock.sold + d.stock.held) / d.stock.on_hand : 0;
      $("#sold-bar").style.width = `${Math.round(taken * 100)}%`;
      $("#sold-bar-label").setAttribute("aria-label", `${Math.round(taken * 100)}% held or sold`);
      const wh = Object.entries(d.stock.warehouses || {}).map(([id, s]) => ({ warehouse: id, ...s }));
      show($("#warehouses"), wh);
      const refusals = Object.entries(d.refusals).map(([reason, count]) => ({ reason, count }));
      if (refusals.length) show($("#refusals"), refusals); else $("#refusals").innerHTML = '<p class="muted">None.</p>';
      history.push(d.reservations_per_s); if (history.length > 60) history.shift();
      const top = Math.max(1, ...history);
      $("#spark-line").setAttribute("points", history.map((v, i) => `${i * 5},${58 - (v / top) * 56}`).join(" "));
    }
    async function follow() {
      for (;;) {
        try {
          await events(`/admin/sales/${encodeURIComponent(page.sku)}/events`, (name, data) => { if (name === "room") draw(data); });
        } catch (e) {
          fail(e);
          if (e.status && e.status < 500) return;  // not allowed: do not retry
        }
        await new Promise(r => setTimeout(r, 2000));  // the stream ended or broke: reconnect
      }
    }
    follow();
  }

  function home(u) {
    $("#role-name").textContent = u.role;
    $("#home-links").innerHTML = $$("#admin-nav a").filter(a => !a.hidden).map(a => `<li><a href="${a.getAttribute("href")}">${esc(a.textContent)}</a></li>`).join("");
  }

  function importer() {
    $("#import-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      const file = $("#import-file").files[0];
      if (!file) return;
      const csv = file.name.endsWith(".csv");
      try {
        const r = await fetch(`/api/v1/products/import?format=${csv ? "csv" : "jsonl"}`, {
          method: "POST", body: file,
          headers: { Authorization: `Bearer ${store.token}`, "Content-Type": csv ? "text/csv" : "application/x-ndjson" },
        });
        const out = await r.json();
        if (!r.ok) throw new FM.ApiError(r.status, out);
        say("Import finished.", "ok");
        show($("#import-out"), out);
      } catch (e) { fail(e); }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const u = Staff.gate(STAFF, "The admin portal is for staff and sellers.");
    if (!u) return;
    for (const a of $$("#admin-nav a")) a.hidden = !a.dataset.roles.split(" ").includes(u.role);
    if (page.template === "admin/home.html") home(u);
    if (page.template === "admin/sale_room.html") saleRoom();
    if (page.template === "admin/catalog.html") importer();
    if (page.template === "admin/sales.html") {
      $("#watch-form").addEventListener("submit", ev => { ev.preventDefault(); location.href = `/admin/sales/${encodeURIComponent($("#watch-sku").value.trim())}`; });
    }
    const auto = $("#queue-form") || (page.template === "admin/audit.html" && $("#audit-form"));
    if (auto) auto.requestSubmit();
  });
})();
