"""The simulator's members-first flash sale against the test platform: members buy during the
early access, non-members are refused until the opening, nothing is oversold."""

from __future__ import annotations

from rich.console import Console

from flashmart.sim.members_first import run_members_first, series


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
    # the plot shows both groups' arrivals and purchases apart, from the same outcomes
    assert (tmp_path / "members-first.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = series(rep)
    assert len(lines["members"]["arrivals"]) == members["buyers"]
    assert len(lines["non_members"]["arrivals"]) == others["buyers"]
    assert len(lines["members"]["purchases"]) == members["bought"]
    assert len(lines["non_members"]["purchases"]) == others["bought"]
    assert all(t >= 0 for t in lines["non_members"]["purchases"])  # none before the opening


def test_a_members_first_sale_with_a_waiting_room_queues_members_in_their_lane(platform, tmp_path):
    rep = run_members_first(
        platform,
        buyers=30,
        member_share=0.5,
        units=30,
        public_opens_s=6,
        out_dir=str(tmp_path),
        console=Console(quiet=True),
        admit_per_s=5,
    )
    assert all(rep["invariants"].values()), rep["invariants"]
    outcomes = rep["buyer_outcomes"]
    queued = [b for b in outcomes if b["lane"]]
    assert queued, "nobody queued"
    # members queue in the members' lane, everybody else in the public lane
    assert all((b["lane"] == "members") == b["member"] for b in queued)
    assert all(b["admitted_s"] is not None for b in outcomes if b["result"] == "bought")
    assert rep["members"]["waiting_room"]["admitted"] >= 1
    assert len(series(rep)["members"]["admissions"]) == rep["members"]["waiting_room"]["admitted"]
    assert (tmp_path / "members-first.png").exists()
