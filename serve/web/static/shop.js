// The storefront's pages. Each function below drives one page; all data comes from /api/v1.
"use strict";

(() => {
  const { page, store, api, $, esc, money, when, say, fail } = FM;
  const views = {};

  async function cartCount() {
    const badge = $("#cart-count");
    if (!badge || (!store.token && !store.cartId)) return;
    try { const c = await api("GET", "/api/v1/cart"); badge.textContent = c.item_count || ""; } catch (e) { /* a count is not worth an error */ }
  }

  // --- search with facets and suggestions ---
  views["shop/search.html"] = () => {
    const form = $("#search-form"), q = $("#q"), sugg = $("#suggestions");
    const params = new URLSearchParams(location.search);
    q.value = params.get("q") || "";
    $("#sort").value = params.get("sort") || "relevance";
    $("#in-stock").checked = params.get("in_stock") === "true";
    let timer = null;

    q.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const text = q.value.trim();
        if (!text) { sugg.innerHTML = ""; return; }
        try {
          const s = await api("GET", `/api/v1/products/suggest?q=${encodeURIComponent(text)}&limit=6`);
          sugg.innerHTML = s.products.map(p => `<li><a href="/shop/products/${p.product_id}">${esc(p.name)}</a></li>`).join("") +
            s.completions.map(c => `<li><button type="button" data-complete="${esc(c)}">${esc(c)}</button></li>`).join("");
        } catch (e) { sugg.innerHTML = ""; }
      }, 150);
    });
    sugg.addEventListener("click", ev => {
      const c = ev.target.dataset && ev.target.dataset.complete;
      if (c) { q.value = c; sugg.innerHTML = ""; run(); }
    });
    form.addEventListener("submit", ev => { ev.preventDefault(); sugg.innerHTML = ""; run(); });
    $("#in-stock").addEventListener("change", () => run());
    $("#sort").addEventListener("change", () => run());
    $("#facets").addEventListener("change", () => run());

    async function run() {
      const p = new URLSearchParams();
      if (q.value.trim()) p.set("q", q.value.trim());
      p.set("sort", $("#sort").value);
      if ($("#in-stock").checked) p.set("in_stock", "true");
      const brands = Array.from(document.querySelectorAll("input[name=brand]:checked")).map(b => b.value);
      if (brands.length) p.set("brand", brands.join(","));
      const cat = document.querySelector("input[name=category]:checked");
      if (cat && cat.value) p.set("category", cat.value);
      if (!p.has("q") && !p.has("category") && !p.has("brand")) { say("Type what you are looking for."); return; }
      history.replaceState(null, "", `/shop?${p}`);
      try {
        const r = await api("GET", `/api/v1/products/search?${p}`);
        $("#result-count").textContent = `(${r.total_results})`;
        $("#results").innerHTML = r.results.map(x => `<li class="card">
          ${x.thumbnail ? `<img src="${esc(x.thumbnail)}" alt="" loading="lazy">` : ""}
          <h3><a href="/shop/products/${x.product_id}">${esc(x.name)}</a></h3>
          <p class="price">${money(x.price)}</p>
          <p>${x.in_stock ? '<span class="badge ok">In stock</span>' : '<span class="badge bad">Sold out</span>'}
          ${x.review_count ? `<span class="muted">★ ${x.rating} (${x.review_count})</span>` : ""}</p></li>`).join("") || "<li>No products match.</li>";
        facets(r.facets || {}, brands, cat ? cat.value : "");
        say("");
      } catch (e) { fail(e); }
    }

    function facets(f, brands, cat) {
      const group = (title, name, type, values, picked) => values && values.length ? `<fieldset><legend>${title}</legend>` +
        values.map(v => `<label><input type="${type}" name="${name}" value="${esc(v.value)}" ${picked(v.value) ? "checked" : ""}> ${esc(v.value)} <span class="muted">(${v.count})</span></label>`).join("") + "</fieldset>" : "";
      $("#facets").innerHTML = group("Brand", "brand", "checkbox", f.brands, v => brands.includes(v)) +
        group("Category", "category", "radio", f.categories, v => v === cat);
    }
    if (q.value || params.get("category") || params.get("brand")) run();
  };

  // --- product page with live stock ---
  views["shop/product.html"] = async () => {
    let product, source = null;
    try { product = await api("GET", `/api/v1/products/${page.product_id}`); } catch (e) { fail(e); return; }
    document.title = `${product.name} · flashmart`;
    $("#name").textContent = product.name;
    $("#product").setAttribute("aria-busy", "false");
    $("#description").textContent = product.description || "";
    $("#gallery").innerHTML = (product.images || []).map((src, i) => `<img src="${esc(src)}" alt="${esc(product.name)}, picture ${i + 1}">`).join("");
    const variants = product.variants || [];
    if (variants.length > 1) {
      $("#variants").innerHTML = `<label for="variant">Option</label><select id="variant" name="sku">` +
        variants.map(v => `<option value="${esc(v.sku)}">${esc(Object.values(v.attributes || {}).join(" / ") || v.sku)} – ${money(v.price)}</option>`).join("") + "</select>";
      $("#variant").addEventListener("change", () => follow(current()));
    }
    const current = () => variants.length > 1 ? $("#variant").value : (variants[0] || {}).sku;
    const variantOf = sku => variants.find(v => v.sku === sku) || {};

    function showStock(soldOut) {
      const badge = $("#stock");
      badge.textContent = soldOut ? "Sold out" : "In stock";
      badge.className = `badge ${soldOut ? "bad" : "ok"}`;
      $("#add").disabled = soldOut;
    }
    // server-sent events from the platform's stock feed: "sold out" appears without a reload
    function follow(sku) {
      $("#price").textContent = money(variantOf(sku).price ?? product.price);
      const left = (product.stock && product.stock.variants || {})[sku];
      showStock(left === undefined ? !product.in_stock : left <= 0);
      if (source) source.close();
      if (!sku) return;
      if (variantOf(sku).digital) { $("#stock").textContent = "Digital: yours at once"; return; }  // never runs out
      source = new EventSource(`/shop/stock/${encodeURIComponent(sku)}/events`);
      source.addEventListener("stock", ev => showStock(JSON.parse(ev.data).sold_out));
    }
    follow(current());

    $("#add-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      const sku = current();
      try {
        await api("POST", "/api/v1/cart/items", { sku, quantity: parseInt($("#qty").value, 10) || 1 });
        say("Added to your cart. The units are held for you.", "ok");
        cartCount();
      } catch (e) {
        if (e.reason === "not_admitted") {
          $("#queue-link").innerHTML = `<a class="button" href="/shop/queue/${encodeURIComponent(sku)}">Go to the waiting room</a>`;
        }
        if (e.reason === "sold_out") showStock(true);
        fail(e);
      }
    });
    $("#save").addEventListener("click", () => { location.href = "/shop/wishlist"; });
    $("#save").hidden = true;  // the wishlist is filled from the cart ("save for later")

    async function reviews() {
      try {
        const r = await api("GET", `/api/v1/products/${page.product_id}/reviews?limit=10`);
        const s = r.summary || {};
        $("#rating").textContent = s.count ? `★ ${Number(s.average).toFixed(1)} from ${s.count}` : "";
        $("#reviews").innerHTML = r.reviews.map(v => `<li><strong>${"★".repeat(v.rating)}</strong> ${esc(v.title || "")}<br>${esc(v.body)} <span class="muted">– ${esc(v.author || "")}</span></li>`).join("") || "<li>No reviews yet.</li>";
      } catch (e) { /* reviews are not essential to buying */ }
    }
    reviews();
    const form = $("#review-form");
    form.hidden = !(store.user && store.user.role === "customer");
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      try {
        await api("POST", `/api/v1/products/${page.product_id}/reviews`, {
          rating: parseInt($("#review-rating").value, 10), title: $("#review-title").value || null, body: $("#review-body").value,
        });
        say("Thank you for your review.", "ok"); form.reset(); reviews();
      } catch (e) { fail(e); }
    });
  };

  // --- cart with each hold's countdown ---
  views["shop/cart.html"] = async () => {
    let cart;
    async function load() {
      try { cart = await api("GET", "/api/v1/cart"); draw(); } catch (e) { fail(e); }
    }
    function left(until) {
      const s = Math.max(0, Math.floor(until - Date.now() / 1000));
      return s ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` : "expired";
    }
    function draw() {
      $("#lines").innerHTML = cart.items.map(i => `<tr>
        <td><a href="/shop/products/${i.product_id}">${esc(i.name)}</a><br><span class="muted">${esc(i.sku)}</span></td>
        <td><label class="skip" for="q-${esc(i.item_id)}">Quantity of ${esc(i.name)}</label>
            <input id="q-${esc(i.item_id)}" type="number" min="0" max="100" value="${i.quantity}" data-item="${esc(i.item_id)}" style="width:5rem"></td>
        <td>${money(i.subtotal)}</td>
        <td><span class="countdown" data-until="${i.reserved_until}" aria-label="held for">${left(i.reserved_until)}</span></td>
        <td><button type="button" class="link" data-save="${esc(i.item_id)}">Save for later</button>
            <button type="button" class="link" data-remove="${esc(i.item_id)}">Remove</button></td></tr>`).join("") ||
        `<tr><td colspan="5">Your cart is empty.</td></tr>`;
      $("#totals").innerHTML = `<dt>Subtotal</dt><dd>${money(cart.subtotal)}</dd><dt>Discount</dt><dd>${money(cart.discount)}</dd>` +
        `<dt>Total</dt><dd id="cart-total">${money(cart.total)}</dd>` + (cart.free_shipping ? "<dt>Shipping</dt><dd>free</dd>" : "");
      $("#coupons").innerHTML = cart.coupons.map(c => `Coupon <strong>${esc(c)}</strong> <button type="button" class="link" data-uncoupon="${esc(c)}">remove</button>`).join("; ");
      $("#to-checkout").hidden = !cart.items.length;
      $("#cart-count").textContent = cart.item_count || "";
    }
    setInterval(() => document.querySelectorAll(".countdown").forEach(el => { el.textContent = left(Number(el.dataset.until)); }), 1000);
    document.addEventListener("click", async ev => {
      const d = ev.target.dataset || {};
      try {
        if (d.remove) cart = await api("DELETE", `/api/v1/cart/items/${d.remove}`);
        else if (d.save) cart = await api("POST", `/api/v1/cart/items/${d.save}/save-for-later`);
        else if (d.uncoupon) cart = await api("DELETE", `/api/v1/cart/coupons/${encodeURIComponent(d.uncoupon)}`);
        else return;
        draw();
      } catch (e) { fail(e); }
    });
    document.addEventListener("change", async ev => {
      const item = ev.target.dataset && ev.target.dataset.item;
      if (!item) return;
      try { cart = await api("PATCH", `/api/v1/cart/items/${item}`, { quantity: parseInt(ev.target.value, 10) || 0 }); draw(); } catch (e) { fail(e); load(); }
    });
    $("#coupon-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      try { cart = await api("POST", "/api/v1/cart/coupons", { code: $("#coupon").value.trim() }); draw(); say("Coupon applied.", "ok"); } catch (e) { fail(e); }
    });
    load();
  };

  // --- checkout: the card goes to the gateway through Stripe.js, flashmart gets its token ---
  views["shop/checkout.html"] = async () => {
    const guest = !store.token;
    $("#guest-fields").hidden = !guest;
    $("#email").required = guest;
    let cart;
    try { cart = await api("GET", "/api/v1/cart"); } catch (e) { fail(e); return; }
    $("#summary").textContent = cart.items.length ? `${cart.item_count} item(s), ${money(cart.total)} before tax and delivery.` : "Your cart is empty.";
    const stripe = Stripe(page.stripe_publishable_key);
    const card = stripe.elements().create("card");
    card.mount("#card-element");

    async function cardToken() {
      const made = await stripe.createPaymentMethod({ type: "card", card });
      if (made && made.error) throw new Error(made.error.message);
      if (made && made.paymentMethod) return made.paymentMethod.id;
      // a Stripe.js without PaymentMethods (the embedded gateway's): a card token's saved card
      const t = await stripe.createToken(card);
      if (t.error) throw new Error(t.error.message || "the card was refused");
      return t.token.card ? t.token.card.id : t.token.id;
    }

    $("#checkout-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      const f = ev.target;
      if (!f.reportValidity()) return;
      const pay = $("#pay");
      pay.disabled = true;
      say("Paying…");
      try {
        const token = await cardToken();
        const address = {};
        for (const k of ["name", "street", "city", "state", "zip", "country"]) {
          const v = f.elements[k].value.trim();
          if (v) address[k] = k === "country" ? v.toUpperCase() : v;
        }
        const body = { shipping_address: address, payment_method: { type: "card", token }, };
        const chosen = f.elements.shipping_option.selectedOptions[0];
        if (chosen && chosen.value) body.shipping_option = chosen.value;
        else if (chosen && chosen.dataset.method) body.shipping_method = chosen.dataset.method;
        if (f.elements.gift_card.value.trim()) body.gift_card = f.elements.gift_card.value.trim();
        if (guest) { body.cart_id = store.cartId; body.guest_email = f.elements.guest_email.value.trim(); }
        const order = await api("POST", "/api/v1/orders/checkout", body, { "Idempotency-Key": crypto.randomUUID() });
        if (guest) localStorage.removeItem("fm.cart");
        const tokenPart = order.order_token ? `?token=${encodeURIComponent(order.order_token)}` : "";
        location.href = `/shop/orders/${encodeURIComponent(order.order_id)}${tokenPart}`;
      } catch (e) { fail(e); pay.disabled = false; }
    });
    // delivery: the carriers' quotes for the cart's parcel to this address; the chosen quote is
    // what the checkout charges (a quote that changed meanwhile is refused with the new one)
    const f = $("#checkout-form");
    async function quote() {
      const country = f.elements.country.value.trim();
      if (!/^[A-Za-z]{2}$/.test(country) || !cart.items.length) return;
      const q = new URLSearchParams({ country });
      const state = f.elements.state.value.trim();
      if (state) q.set("state", state);
      try {
        const r = await api("GET", `/api/v1/cart/shipping-options?${q}`);
        const select = f.elements.shipping_option;
        const method = select.selectedOptions[0] && select.selectedOptions[0].dataset.method;
        select.innerHTML = r.options.map(o => `<option value="${esc(o.option || "")}" data-method="${esc(o.method)}">` +
          `${esc(o.carrier ? `${o.carrier} ${o.service}` : o.method)}: ${o.cost ? money(o.cost) : "free"}, by ${esc(o.estimated_delivery)}</option>`).join("");
        const same = [...select.options].find(o => o.dataset.method === method);  // keep the buyer's choice of speed
        if (same) same.selected = true;
        select.dataset.quotedFor = `${country.toUpperCase()}/${state}`;
        $("#shipping-note").textContent = r.needs_shipping ? "Delivery options are the carriers' quotes for your address." : "Nothing in this cart ships.";
      } catch (e) { fail(e); }
    }
    f.elements.country.addEventListener("change", quote);
    f.elements.state.addEventListener("change", quote);
    await quote();
    $("#pay").disabled = !cart.items.length;  // ready: the card element is mounted
  };

  // --- orders and tracking ---
  views["shop/orders.html"] = async () => {
    if (!store.token) return;
    try {
      const r = await api("GET", "/api/v1/orders?limit=50");
      $("#orders").innerHTML = r.orders.length ? `<div class="scroll"><table><thead><tr><th scope="col">Order</th><th scope="col">Placed</th><th scope="col">Status</th><th scope="col">Total</th></tr></thead><tbody>` +
        r.orders.map(o => `<tr><td><a href="/shop/orders/${esc(o.order_id)}">${esc(o.order_id)}</a></td><td>${when(o.placed_at)}</td><td>${esc(o.status)}</td><td>${money(o.grand_total)}</td></tr>`).join("") +
        "</tbody></table></div>" : "<p>No orders yet.</p>";
    } catch (e) { fail(e); }
  };

  views["shop/order.html"] = async () => {
    const token = new URLSearchParams(location.search).get("token");
    const path = `/api/v1/orders/${encodeURIComponent(page.order_id)}${token ? `?token=${encodeURIComponent(token)}` : ""}`;
    let order;
    async function load() {
      try { order = await api("GET", path); draw(); } catch (e) { fail(e); }
    }
    function draw() {
      $("#order-status").textContent = order.status.replace(/_/g, " ");
      $("#order-facts").innerHTML = `<dt>Placed</dt><dd>${when(order.placed_at)}</dd><dt>Total</dt><dd>${money(order.grand_total)}</dd>` +
        (order.estimated_delivery ? `<dt>Estimated delivery</dt><dd>${esc(order.estimated_delivery)}</dd>` : "");
      $("#items").innerHTML = `<ul>${order.items.map(i => `<li>${i.quantity} × ${esc(i.name)} (${money(i.price)})${i.returned ? `, ${i.returned} returned` : ""}</li>`).join("")}</ul>`;
      const s = order.shipment;
      $("#shipment").textContent = s ? `${s.carrier} ${s.tracking_number || ""}: ${s.status.replace(/_/g, " ")}${s.current_location ? ` at ${s.current_location}` : ""}` : "Not shipped yet.";
      $("#timeline").innerHTML = order.timeline.map(e => `<li><strong>${esc(e.status.replace(/_/g, " "))}</strong> <span class="muted">${when(e.timestamp)}</span>` +
        `${e.location ? ` · ${esc(e.location)}` : ""}${e.note ? `<br>${esc(e.note)}` : ""}</li>`).join("");
      const mine = !!store.token;
      $("#cancel").hidden = !mine || !["confirmed", "review"].includes(order.status);
      $("#return-box").hidden = !mine || order.status !== "delivered";
      $("#return-sku").innerHTML = order.items.map(i => `<option value="${esc(i.sku)}">${esc(i.name)}</option>`).join("");
    }
    $("#cancel").addEventListener("click", async () => {
      if (!confirm("Cancel this order?")) return;
      try { await api("POST", `/api/v1/orders/${encodeURIComponent(page.order_id)}/cancel`); say("Order cancelled.", "ok"); load(); } catch (e) { fail(e); }
    });
    $("#return-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      try {
        await api("POST", `/api/v1/orders/${encodeURIComponent(page.order_id)}/returns`, {
          items: [{ sku: $("#return-sku").value, quantity: parseInt($("#return-qty").value, 10) }], reason: $("#return-reason").value,
        });
        say("Return requested.", "ok"); load();
      } catch (e) { fail(e); }
    });
    await load();
    setInterval(() => { if (!document.hidden) load(); }, 3000);  // the courier's updates follow
  };

  // --- sign in / register ---
  views["shop/account.html"] = () => {
    const next = new URLSearchParams(location.search).get("next");
    async function signIn(email, password) {
      const tokens = await api("POST", "/api/v1/auth/login", { email, password });  // sends X-Cart-Id: the guest cart merges
      store.signIn(tokens);
      const home = { customer: "/shop", courier: "/courier" }[tokens.user.role] || "/admin";
      location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : home;
    }
    $("#login-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      try { await signIn($("#login-email").value.trim(), $("#login-password").value); } catch (e) { fail(e); }
    });
    $("#register-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      const email = $("#reg-email").value.trim(), password = $("#reg-password").value;
      try {
        await api("POST", "/api/v1/auth/register", { email, password, name: $("#reg-name").value.trim() });
        await signIn(email, password);
      } catch (e) { fail(e); }
    });
  };

  // --- wishlist (saved for later) ---
  views["shop/wishlist.html"] = async () => {
    async function load() {
      try {
        const w = await api("GET", "/api/v1/wishlist");
        $("#saved").innerHTML = w.items.map(s => `<li class="card"><h3><a href="/shop/products/${s.product_id}">${esc(s.name)}</a></h3><p class="price">${money(s.price)}</p>
          <button type="button" data-move="${esc(s.sku)}">Move to cart</button> <button type="button" class="secondary" data-drop="${esc(s.sku)}">Remove</button></li>`).join("") ||
          "<li>Nothing saved. In your cart, “Save for later” puts an item here.</li>";
      } catch (e) { fail(e); }
    }
    document.addEventListener("click", async ev => {
      const d = ev.target.dataset || {};
      try {
        if (d.move) { await api("POST", `/api/v1/wishlist/${encodeURIComponent(d.move)}/move-to-cart`); say("Moved to your cart.", "ok"); }
        else if (d.drop) await api("DELETE", `/api/v1/wishlist/${encodeURIComponent(d.drop)}`);
        else return;
        load();
      } catch (e) { fail(e); }
    });
    load();
  };

  // --- the waiting room with the buyer's place ---
  views["shop/queue.html"] = () => {
    const path = `/api/v1/flash-sales/${encodeURIComponent(page.sku)}/queue`;
    let timer = null;
    function draw(st) {
      $("#position").textContent = st.status === "admitted" ? "in" : st.position;
      $("#wait").textContent = st.status === "admitted" ? "0 s" : `${Math.ceil(st.estimated_wait_s)} s`;
      $("#queue-state").innerHTML = st.status === "admitted"
        ? `You are in: buy within ${Math.floor(st.admission_expires_in_s)} s. <a href="javascript:history.back()">Back to the product</a>`
        : st.status === "expired" ? "Your admission lapsed: join again." : "Waiting…";
      $("#join").hidden = st.status !== "expired";
    }
    async function poll() {
      try { draw(await api("GET", path)); } catch (e) { if (e.status === 404) { $("#join").hidden = false; } else fail(e); }
    }
    $("#join").addEventListener("click", async () => {
      if (!store.token) { location.href = `/shop/account?next=${encodeURIComponent(location.pathname)}`; return; }
      try { draw(await api("POST", path)); clearInterval(timer); timer = setInterval(poll, 2000); } catch (e) { fail(e); }
    });
    if (store.token) { poll(); timer = setInterval(poll, 2000); }
  };

  // --- membership: plans, subscribe with a card saved through Stripe.js, benefits, billing ---
  const cents = (minor, cur) => `${(Number(minor) / 100).toFixed(2)} ${esc(cur || "USD")}`;
  const epoch = s => s ? new Date(s * 1000).toLocaleDateString() : "";
  function benefitLines(b) {
    const out = [];
    if (b.free_shipping_methods && b.free_shipping_methods.length) out.push(`Free ${b.free_shipping_methods.join(" and ")} delivery`);
    if (b.member_discount_pct) out.push(`${b.member_discount_pct}% off list prices`);
    if (b.early_access_min) out.push(`Flash sales ${b.early_access_min} min early`);
    if (b.content_library) out.push("The digital library");
    if (b.reward_points_per_unit) out.push(`${b.reward_points_per_unit} reward points per $1`);
    return out;
  }

  views["shop/membership.html"] = async () => {
    let plans = [];
    try { plans = await api("GET", "/api/v1/memberships/plans"); } catch (e) { fail(e); }
    $("#plans").innerHTML = plans.map((p, i) => `<label class="card plan"><input type="radio" name="plan_id" value="${esc(p.id)}" ${i === 0 ? "checked" : ""}>
        <strong>${esc(p.name)}</strong> <span class="price">${cents(p.price_minor, p.currency)} / ${esc(p.billing_interval)}</span>
        ${p.trial_days ? `<span class="badge ok">${p.trial_days}-day trial</span>` : ""}
        <ul>${benefitLines(p.benefits).map(b => `<li>${esc(b)}</li>`).join("")}</ul></label>`).join("") || "<p>No plans are offered yet.</p>";
    if (!store.token) { $("#signin-first").hidden = false; $("#card-box").hidden = true; return; }
    const key = () => ({ "Idempotency-Key": crypto.randomUUID() });

    async function load() {
      let m = null;
      try { m = await api("GET", "/api/v1/memberships/me"); } catch (e) { if (e.status !== 404) fail(e); }
      const live = !!(m && ["trialing", "active", "past_due"].includes(m.status));
      $("#member-box").hidden = !m;
      $("#plans-box").hidden = live;
      if (!m) return;
      $("#member-facts").innerHTML = `<dt>Plan</dt><dd id="member-plan">${esc(m.plan ? m.plan.name : "")}</dd>` +
        `<dt>Status</dt><dd id="member-status">${esc(m.cancel_at_period_end ? "cancelled (until the period ends)" : m.status.replace(/_/g, " "))}</dd>` +
        (m.period_end ? `<dt>${m.cancel_at_period_end ? "Ends" : "Renews"}</dt><dd>${epoch(m.period_end)}</dd>` : "") +
        (m.trial_end ? `<dt>Trial until</dt><dd>${epoch(m.trial_end)}</dd>` : "") +
        (m.grace_until ? `<dt>Card problem: benefits until</dt><dd>${epoch(m.grace_until)}</dd>` : "");
      $("#cancel-membership").hidden = !live || m.cancel_at_period_end;
      $("#resume-membership").hidden = !live || !m.cancel_at_period_end;
      try {
        const b = await api("GET", "/api/v1/memberships/me/benefits");
        const lines = b.member ? benefitLines(b.benefits) : [];
        $("#benefits").innerHTML = (lines.length ? lines.map(l => `<dt>✓</dt><dd>${esc(l)}</dd>`).join("") : "<dt>–</dt><dd>No benefits now.</dd>") +
          `<dt>Reward points</dt><dd id="reward-points">${Number(b.reward_points || 0).toLocaleString()}</dd>`;
        const inv = await api("GET", "/api/v1/memberships/me/invoices?limit=50");
        $("#invoices").innerHTML = inv.length ? `<div class="scroll"><table><caption class="skip">Billing history</caption><thead><tr><th scope="col">Date</th><th scope="col">Plan</th><th scope="col">Amount</th><th scope="col">Status</th></tr></thead><tbody>` +
          inv.map(i => `<tr><td>${when(i.created_at)}</td><td>${esc(i.plan_id)}</td><td>${cents(i.amount_minor, i.currency)}</td><td>${esc(i.status)}</td></tr>`).join("") +
          "</tbody></table></div>" : '<p class="muted">No invoices yet.</p>';
      } catch (e) { fail(e); }
    }

    const stripe = Stripe(page.stripe_publishable_key);
    const card = stripe.elements().create("card");
    card.mount("#card-element");
    // a SetupIntent saves the card at the gateway; flashmart receives only the saved card's id
    async function savedCard() {
      const { client_secret } = await api("POST", "/api/v1/memberships/me/card-setup", undefined, key());
      const r = await stripe.confirmCardSetup(client_secret, { payment_method: { card } });
      if (r.error) throw new Error(r.error.message || "the card was refused");
      const pm = r.setupIntent.payment_method;
      return typeof pm === "string" ? pm : pm.id;
    }
    $("#subscribe-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      const picked = document.querySelector("input[name=plan_id]:checked");
      if (!picked) { say("Choose a plan.", "error"); return; }
      const btn = $("#subscribe");
      btn.disabled = true;
      say("Subscribing…");
      try {
        const payment_method = await savedCard();
        await api("POST", "/api/v1/memberships/me", { plan_id: picked.value, payment_method }, key());
        say("Welcome: your membership has started.", "ok");
        await load();
      } catch (e) { fail(e); }
      btn.disabled = false;
    });
    $("#cancel-membership").addEventListener("click", async () => {
      if (!confirm("Cancel your membership at the end of the period paid for?")) return;
      try { await api("POST", "/api/v1/memberships/me/cancel", undefined, key()); say("Membership cancelled: your benefits last until the period ends.", "ok"); load(); } catch (e) { fail(e); }
    });
    $("#resume-membership").addEventListener("click", async () => {
      try { await api("POST", "/api/v1/memberships/me/resume", undefined, key()); say("Your membership continues.", "ok"); load(); } catch (e) { fail(e); }
    });
    $("#subscribe").disabled = !plans.length;
    await load();
  };

  // --- the digital library: what the buyer may open; HLS video, audio, e-book download ---
  views["shop/library.html"] = async () => {
    if (!store.token) { $("#library-signin").hidden = false; return; }
    let hls = null;
    const icon = { video: "Video", music: "Music", ebook: "E-book" };
    async function load() {
      const kind = $("#library-kind").value;
      try {
        const items = await api("GET", `/api/v1/content/mine?limit=100${kind ? `&kind=${kind}` : ""}`);
        $("#library").innerHTML = items.map(i => `<li class="card"><span class="badge">${icon[i.kind]}</span>
          <h3>${esc(i.title)}</h3>${i.duration_s ? `<p class="muted">${Math.round(i.duration_s)} s</p>` : ""}
          <button type="button" data-open="${i.id}" data-kind="${i.kind}" aria-label="${i.kind === "ebook" ? "Download" : "Play"} ${esc(i.title)}">${i.kind === "ebook" ? "Download" : "Play"}</button></li>`).join("") ||
          '<li>Nothing here yet. Members find the library here; items you buy appear too.</li>';
      } catch (e) { fail(e); }
    }
    function stop() {
      if (hls) { hls.destroy(); hls = null; }
      for (const el of [$("#video-player"), $("#audio-player")]) { el.pause(); el.removeAttribute("src"); el.hidden = true; }
    }
    async function open(id, kind, title) {
      const a = await api("GET", `/api/v1/content/${id}/access`);
      if (kind === "ebook") {
        const link = document.createElement("a");
        link.href = a.url; link.download = ""; link.rel = "noopener";
        document.body.appendChild(link); link.click(); link.remove();
        say(`Downloading ${title}: your copy carries your licence.`, "ok");
        return;
      }
      stop();
      $("#player-box").hidden = false;
      $("#now-playing").textContent = `Now playing: ${title}`;
      const el = kind === "video" ? $("#video-player") : $("#audio-player");
      el.hidden = false;
      const start = a.position_s || 0;
      // hls.js over MediaSource wherever it works (one player, the same in every browser); the
      // browser's own HLS only where MediaSource is missing (iPhone Safari)
      if (kind === "video" && window.Hls && Hls.isSupported()) {
        hls = new Hls({ enableWorker: false, startPosition: start });  // no blob: worker under the page's CSP
        hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) say(`The video stopped: ${d.details}`, "error"); });
        hls.loadSource(a.hls);
        hls.attachMedia(el);
      } else {
        el.src = kind === "video" ? a.hls : a.url;
        if (start) el.currentTime = start;
      }
      el.addEventListener("playing", () => { el.dataset.played = "yes"; }, { once: true });
      let reported = 0;
      el.ontimeupdate = () => {
        if (el.currentTime - reported < 10) return;
        const watched = el.currentTime - reported; reported = el.currentTime;
        api("POST", `/api/v1/content/${id}/progress`, { position_s: el.currentTime, watched_s: Math.max(0, watched) }).catch(() => {});
      };
      el.play().catch(() => { /* a browser may want a click first: the controls are there */ });
      el.focus();
    }
    $("#library").addEventListener("click", async ev => {
      const b = ev.target.closest("button[data-open]");
      if (!b) return;
      try { await open(b.dataset.open, b.dataset.kind, b.closest("li").querySelector("h3").textContent); } catch (e) { fail(e); }
    });
    $("#library-kind").addEventListener("change", load);
    await load();
  };

  document.addEventListener("DOMContentLoaded", () => {
    cartCount();
    const view = views[page.template];
    if (view) view();
  });
})();
