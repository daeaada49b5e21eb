// The admin portal: navigation by role, the live sale room, bulk import. Most pages are forms bound
// to the JSON API by app.js (data-api); the API decides who may do what.
"use strict";

(() => {
  const { page, store, api, events, $, $$, esc, say, fail, show } = FM;
  const STAFF = ["admin", "seller", "support"];

  function saleRoom() {
    const history = [];
    const n = v => (v === null || v === undefined) ? "–" : Number(v).toLocaleString();
    const ms = v => v === null || v === undefined ? "–" : `≤ ${v} ms`;
    const reasons = (el, r) => {
      const rows = Object.entries(r || {}).map(([reason, count]) => ({ reason, count }));
      if (rows.length) show(el, rows); else el.innerHTML = '<p class="muted">None.</p>';
    };
    function draw(d) {
      $("#updated").textContent = new Date(d.at * 1000).toLocaleTimeString();
      const mine = d.sku_requests;
      $("#m-reservations").textContent = n(mine.reservations_per_s);
      $("#m-sku-p99").textContent = ms(mine.p99_ms.reserve);
      reasons($("#sku-refusals"), mine.refusals);
      $("#p-reservations").textContent = n(d.reservations_per_s);
      $("#m-held").textContent = n(d.stock.held);
      $("#m-sold").textContent = n(d.stock.sold);
      $("#m-available").textContent = n(d.stock.available);
      $("#m-waiting").textContent = d.waiting_room.open ? n(d.waiting_room.waiting) : "closed";
      $("#m-checkouts").textContent = n(d.checkouts_per_s);
      $("#m-p99").textContent = ms(d.p99_ms.reserve);
      $("#m-gateway").textContent = `${n(d.gateway.calls_per_s)} / ${n(d.gateway.limit_per_s)} per s`;
      const taken = d.stock.on_hand ? (d.stock.sold + d.stock.held) / d.stock.on_hand : 0;
      $("#sold-bar").style.width = `${Math.round(taken * 100)}%`;
      $("#sold-bar-label").setAttribute("aria-label", `${Math.round(taken * 100)}% held or sold`);
      const wh = Object.entries(d.stock.warehouses || {}).map(([id, s]) => ({ warehouse: id, ...s }));
      show($("#warehouses"), wh);
      reasons($("#refusals"), d.refusals);
      history.push(mine.reservations_per_s); if (history.length > 60) history.shift();
      const peak = $("#m-reservations");  // the highest rate seen while watching
      peak.dataset.peak = Math.max(Number(peak.dataset.peak || 0), mine.reservations_per_s);
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

  // products with their variants and the units per warehouse
  function products() {
    const form = $("#products-form");
    const units = w => `${w.on_hand} / ${w.held} / ${w.sold} / <strong>${w.available}</strong>`;
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const p = new URLSearchParams({ limit: "50" });
      for (const k of ["q", "status"]) if (form.elements[k].value.trim()) p.set(k, form.elements[k].value.trim());
      try {
        const r = await api("GET", `/api/v1/admin/products?${p}`);
        $("#products-out").innerHTML = r.products.length ? `<div class="scroll"><table><thead><tr><th scope="col">Product</th><th scope="col">Status</th><th scope="col">Price</th><th scope="col">Variant (SKU)</th><th scope="col">Units per warehouse: on hand / held / sold / available</th></tr></thead><tbody>` +
          r.products.map(x => (x.variants.length ? x.variants : [{ sku: "–", attributes: {}, warehouses: {} }]).map((v, i) => `<tr>${i === 0 ? `<th scope="row" rowspan="${Math.max(1, x.variants.length)}"><a href="/shop/products/${x.product_id}">${esc(x.name)}</a><br><span class="muted">#${x.product_id} · ${esc(x.seller)}</span></th><td rowspan="${Math.max(1, x.variants.length)}">${esc(x.status)}</td><td rowspan="${Math.max(1, x.variants.length)}">${esc(x.price)}</td>` : ""}` +
            `<td>${esc(v.sku)} <span class="muted">${esc(Object.values(v.attributes || {}).join(" / "))}</span></td>` +
            `<td data-sku="${esc(v.sku)}">${Object.entries(v.warehouses).map(([w, n]) => `${esc(w)}: ${units(n)}`).join("<br>") || '<span class="muted">not stocked</span>'}</td></tr>`).join("")).join("") +
          "</tbody></table></div>" : "<p>No products.</p>";
        say("");
      } catch (e) { fail(e); }
    });
    form.requestSubmit();
  }

  // report export: the same filters as the table, as a CSV file (fetched with the token)
  function reports() {
    const form = $("#report-form");
    $("#report-csv").addEventListener("click", async ev => {
      ev.preventDefault();
      const p = new URLSearchParams({ format: "csv" });
      const report = form.elements.report.value;
      if (report === "sales") p.set("by", form.elements.by.value);
      for (const k of ["from", "to"]) if (form.elements[k].value) p.set(k, form.elements[k].value);
      try { await FM.download(`/api/v1/reports/${report}?${p}`, `${report}.csv`); say("CSV exported.", "ok"); } catch (e) { fail(e); }
    });
  }

  function invoices() {
    $("#doc-pdf").addEventListener("click", async () => {
      const code = $("#inv-code").value.trim();
      if (!code) { say("Give the document's number first.", "error"); return; }
      try { await FM.download(`/api/v1/invoices/${encodeURIComponent(code)}/pdf`, `${code}.pdf`); say("PDF downloaded.", "ok"); } catch (e) { fail(e); }
    });
  }

  // forms marked data-follow="field-id" take that field's value when its form has answered (the
  // order or ticket just opened), so the actions below it are about the same object
  function follow() {
    for (const f of $$("form[data-follow]")) {
      const source = document.getElementById(f.dataset.follow);
      source.form.addEventListener("api:done", () => {
        f.elements[source.name].value = source.value;
        if (f.id === "returns-form") f.requestSubmit();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const u = Staff.gate(STAFF, "The admin portal is for staff and sellers.");
    if (!u) return;
    for (const a of $$("#admin-nav a")) a.hidden = !a.dataset.roles.split(" ").includes(u.role);
    // parts of a page a role cannot use (the API would refuse them) are not shown to it
    for (const el of $$("[data-staff-roles]")) el.hidden = !el.dataset.staffRoles.split(" ").includes(u.role);
    // a seller's order rows carry their own lines; the order itself is the buyer's and staff's
    if (u.role === "seller" && $("#orders-out")) delete $("#orders-out").dataset.open;
    if (page.template === "admin/home.html") home(u);
    if (page.template === "admin/sale_room.html") saleRoom();
    if (page.template === "admin/catalog.html") importer();
    if (page.template === "admin/sales.html") {
      $("#watch-form").addEventListener("submit", ev => { ev.preventDefault(); location.href = `/admin/sales/${encodeURIComponent($("#watch-sku").value.trim())}`; });
    }
    if (page.template === "admin/products.html") products();
    if (page.template === "admin/reports.html") reports();
    if (page.template === "admin/invoices.html") invoices();
    follow();
    for (const f of $$("form[data-autoload]")) f.requestSubmit();  // the page's list, at once
  });
})();
