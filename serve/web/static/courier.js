// The courier app: assigned shipments on a phone-sized page; each status update goes to the API
// and lands on the buyer's order timeline.
"use strict";

(() => {
  const { api, $, esc, say, fail } = FM;
  // what a courier reports, and the shipment status it records
  const STEPS = [
    ["shipped", "Picked up"],
    ["in_transit", "In transit"],
    ["out_for_delivery", "Out for delivery"],
    ["delivered", "Delivered"],
    ["failed_attempt", "Delivery attempt failed"],
  ];
  const label = s => (STEPS.find(([k]) => k === s) || [s, s.replace(/_/g, " ")])[1];

  async function load() {
    try {
      const r = await api("GET", "/api/v1/shipments?limit=50");
      $("#shipments").innerHTML = r.shipments.map(s => {
        const a = s.shipping_address || {};
        const open = s.status !== "delivered";
        return `<li class="card" data-shipment="${s.shipment_id}">
          <h2>Order ${esc(s.order_id)}</h2>
          <p><span class="badge ${open ? "warn" : "ok"}" data-status>${esc(label(s.status))}</span> ${esc(s.carrier)} ${esc(s.tracking_number || "")}</p>
          <address>${esc(a.name)}<br>${esc(a.street)}<br>${esc(a.zip)} ${esc(a.city)} ${esc(a.country)}</address>
          ${open ? `<form class="update" data-id="${s.shipment_id}">
            <label for="st-${s.shipment_id}">New status</label>
            <select id="st-${s.shipment_id}" name="status">${STEPS.map(([k, l]) => `<option value="${k}">${l}</option>`).join("")}</select>
            <label for="loc-${s.shipment_id}">Where</label>
            <input id="loc-${s.shipment_id}" name="location" maxlength="200" placeholder="e.g. Depot 4">
            <label for="note-${s.shipment_id}">Note for the buyer</label>
            <input id="note-${s.shipment_id}" name="note" maxlength="500" placeholder="e.g. left with the neighbour">
            <p><button type="submit">Update</button></p></form>` : ""}
        </li>`;
      }).join("") || "<li>No shipments assigned to you.</li>";
    } catch (e) { fail(e); }
  }

  document.addEventListener("submit", async ev => {
    const form = ev.target.closest("form.update");
    if (!form) return;
    ev.preventDefault();
    const body = { status: form.elements.status.value };
    for (const k of ["location", "note"]) if (form.elements[k].value.trim()) body[k] = form.elements[k].value.trim();
    try {
      await api("POST", `/api/v1/shipments/${form.dataset.id}/events`, body);
      say(`Shipment ${form.dataset.id}: ${label(body.status)}.`, "ok");
      load();
    } catch (e) { fail(e); }
  });

  document.addEventListener("DOMContentLoaded", () => {
    if (!Staff.gate(["courier", "admin"], "The courier app is for couriers.")) return;
    $("#refresh").addEventListener("click", load);
    load();
  });
})();
