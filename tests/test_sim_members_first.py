"""The simulator's members-first flash sale against the test platform: members buy during the
early access, non-members are refused until the opening, nothing is oversold."""

from __future__ import annotations

from rich.console import Console

from flashmart.sim.members_first import run_members_first


def test_a_members_first_sale_serves_members_first(platform, tmp_path):
    rep = run_members_first(
        platform,
        buyers=40,
        member_share=0.4,
        units=10,
        public_opens_s=8,
        out_dir=str(tmp_path),
        console=Console(quiet=True),
    )
    assert all(rep["invariants"].values()), rep["invariants"]
    members, others = rep["members"], rep["non_members"]
    assert members["buyers"] + others["buyers"] == 40
    assert members["bought_before_opening"] >= 1  # members entered before the public
    # a request sent just before the opening may reach the API after it: at most those got in
    assert 1 <= others["refused_before_opening"] <= others["arrived_before_opening"]
    assert 1 <= rep["units_sold"] <= 10
    assert (tmp_path / "members-first.json").exists()
