"""The page's status line in a real browser: what an action said stays said when a list on the same
page finishes refreshing after it. The late answer is held in the browser and then given (named
fake: a slow network answer, which the real server cannot be made to produce on demand)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_apps import sign_in

pytestmark = pytest.mark.slow


def test_a_list_answering_late_does_not_erase_what_an_action_said(admin, new_page):
    page = new_page()
    sign_in(page, admin, "/admin/reordering")
    expect(page.locator("#pos-out")).not_to_be_empty()  # the page's own first load is done
    held = []
    page.route("**/api/v1/purchase-orders*", lambda route: held.append(route))
    page.locator("#pos-form").get_by_role("button", name="Show").click()

    page.get_by_label("Name", exact=True).fill("Late Lists Ltd")
    page.locator("#staff-only").get_by_label("Email").fill("orders@latelists.example")
    page.get_by_role("button", name="Add supplier").click()
    expect(page.locator("#status")).to_have_text("Supplier added.")

    assert len(held) == 1, "the purchase-orders refresh never went out"
    held[0].fulfill(json={"marker": "the late answer"})
    expect(page.locator("#pos-out")).to_contain_text("the late answer")  # shown after its say()
    expect(page.locator("#status")).to_have_text("Supplier added.")
