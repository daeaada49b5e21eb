"""The pages' configuration without a platform: which Stripe.js a checkout loads, the policy that
lets only it run, and every page's template rendering."""

from __future__ import annotations

import json

import pytest

from flashmart.serve.web import pages
from flashmart.settings import Settings


def settings(**kw) -> Settings:
    return Settings(_env_file=None, localstripe_port=8420, **kw)


def test_the_embedded_gateway_serves_the_checkout_its_stripe_js():
    s = settings()
    assert pages.stripe_js_url(s) == "http://127.0.0.1:8420/js.stripe.com/v3/"
    csp = pages.page_csp(s)
    assert "script-src 'self' http://127.0.0.1:8420;" in csp
    assert "connect-src 'self' http://127.0.0.1:8420" in csp  # the card goes to the gateway
    assert "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp


def test_live_stripe_loads_stripes_own_script_and_frames():
    s = settings(stripe_api_base="https://api.stripe.com", stripe_publishable_key="pk_live_x")
    assert pages.stripe_js_url(s) == "https://js.stripe.com/v3/"
    csp = pages.page_csp(s)
    assert "script-src 'self' https://js.stripe.com https://*.stripe.com" in csp
    assert "frame-src https://js.stripe.com https://*.stripe.com" in csp
    assert "connect-src 'self' https://api.stripe.com" in csp


def test_a_configured_stripe_js_wins():
    s = settings(stripe_js_url="https://cdn.example.com/stripe/v3/")
    assert pages.stripe_js_url(s) == "https://cdn.example.com/stripe/v3/"
    assert "https://cdn.example.com" in pages.page_csp(s)


def test_the_library_may_play_media_from_the_object_store_and_nothing_else():
    csp = pages.page_csp(settings(object_store_port=8433))
    assert "media-src 'self' blob: http://127.0.0.1:8433;" in csp  # signed URLs, MediaSource
    assert "http://127.0.0.1:8433;" in csp.split("connect-src")[1]  # the player's segment fetches
    public = pages.page_csp(settings(object_store_public_url="https://media.example.com/store"))
    assert "media-src 'self' blob: https://media.example.com;" in public
    assert "127.0.0.1:8433" not in public


class _Ctx:
    def __init__(self, s: Settings):
        self.settings = s


TEMPLATES = sorted(
    {t for t, _ in pages._SHOP_PAGES.values()}
    | {t for t, _ in pages._ADMIN_PAGES.values()}
    | {
        "shop/search.html",
        "shop/product.html",
        "shop/order.html",
        "shop/queue.html",
        "admin/sale_room.html",
        "courier/home.html",
    }
)


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_page_renders_with_its_data_and_scripts(template):
    out = pages.render(_Ctx(settings()), template, app=template.split("/")[0], title="t", sku="S-1")
    html = out.body.decode()
    assert out.headers["content-security-policy"].startswith("default-src 'self'")
    data = html.split('<script type="application/json" id="page-data">')[1].split("</script>")[0]
    assert json.loads(data)["template"] == template
    assert '<script src="/static/web/app.js" defer></script>' in html
    assert "<script>" not in html  # no inline script: the policy would block it
    for name in ("app.css", "app.js"):
        assert name in pages._static_files()


def test_page_data_cannot_close_its_script_element():
    out = pages.render(_Ctx(settings()), "shop/queue.html", app="shop", title="t", sku="</script>")
    html = out.body.decode()
    assert html.count("</script>") == html.count("<script")
    data = html.split('<script type="application/json" id="page-data">')[1].split("</script>")[0]
    assert json.loads(data)["sku"] == "</script>"  # the page's script still reads the value
