"""The live sale room in a real browser while the flash-sale simulator (the sim runner, against
the test platform) sells a hot SKU: the admin opens the sale from the flash-sale list and watches
this SKU's figures (reservations per second, holds, sold, remaining, refusals by reason) and the
platform's move, then the simulator's own invariants must hold."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect
from rich.console import Console

from tests.browser.shop_setup import wait_until
from tests.browser.test_apps import sign_in

pytestmark = pytest.mark.slow
SCENARIO = Path(__file__).with_name("sale_room.toml")


class Simulation(threading.Thread):
    """The simulator (flashmart.sim.runner) in the background: it prepares its own hot SKU and
    flash sale, runs the buyers over HTTP and checks its invariants."""

    def __init__(self, settings, out_dir: Path):
        super().__init__(daemon=True)
        self.settings, self.out_dir = settings, out_dir
        self.console = Console(record=True, width=160)
        self.ok: bool | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from flashmart.sim.runner import run_scenario_by_name

        try:
            self.ok = run_scenario_by_name(
                self.settings,
                str(SCENARIO),
                catalog_products=300,
                out_dir=str(self.out_dir),
                console=self.console,
            )
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


def test_admin_opens_a_flash_sale_and_watches_its_room_move_while_the_simulator_runs(
    admin, new_page, shots, platform, db, tmp_path
):
    last = db.execute("SELECT coalesce(max(id), 0) AS id FROM flash_sales").fetchone()["id"]
    page = new_page()
    sign_in(page, admin, "/admin/sales")
    expect(page.get_by_role("heading", name="Flash sales")).to_be_visible()

    sim = Simulation(platform, tmp_path / "sim")
    sim.start()

    def new_sale():
        assert sim.error is None, sim.error
        row = db.execute(
            "SELECT sku FROM flash_sales WHERE id > %s ORDER BY id LIMIT 1", (last,)
        ).fetchone()
        return row and row["sku"]

    sku = wait_until(new_sale, "the simulator's flash sale", deadline_s=300)
    page.get_by_label("Showing").select_option("live")
    page.get_by_role("button", name="Show sales").click()
    link = page.locator("#sales-out").get_by_role("link", name=f"Sale room {sku}")
    expect(link).to_be_visible()
    page.screenshot(path=shots / "admin-flash-sale-list.png", full_page=True)
    link.click()
    expect(page).to_have_url(re.compile(f"/admin/sales/{re.escape(sku)}$"))
    expect(page.locator("#m-available")).not_to_have_text("–")

    # the room moves: this SKU's reservations per second, units held and sold, then it sells out
    # and the buyers who come after are refused with the reason
    page.wait_for_function(
        "() => Number(document.querySelector('#m-reservations').dataset.peak || 0) > 0",
        polling=200,
        timeout=120_000,
    )
    page.wait_for_function(
        "() => parseInt(document.querySelector('#m-sold').textContent.replace(/,/g, '')) > 0",
        polling=200,
        timeout=120_000,
    )
    expect(page.locator("#sku-refusals")).to_contain_text("sold_out", timeout=120_000)
    expect(page.locator("#m-available")).to_have_text("0", timeout=120_000)
    expect(page.locator("#refusals")).to_contain_text("sold_out")  # platform-wide too
    expect(page.locator("#m-p99")).to_contain_text("ms")
    expect(page.locator("#m-sku-p99")).to_contain_text("ms")
    page.screenshot(path=shots / "admin-sale-room.png", full_page=True)

    until = time.monotonic() + 600
    while sim.is_alive() and time.monotonic() < until:
        sim.join(timeout=5)
    assert not sim.is_alive(), "the simulation did not finish"
    assert sim.error is None, sim.error
    assert sim.ok, sim.console.export_text()[-4000:]
    # once the sale has settled, the room shows what PostgreSQL's ledger holds
    truth = db.execute(
        "SELECT sum(sold) AS sold, sum(held) AS held FROM inventory_stock WHERE sku = %s", (sku,)
    ).fetchone()
    assert truth["sold"] > 0
    expect(page.locator("#m-sold")).to_have_text(f"{truth['sold']:,}", timeout=60_000)
