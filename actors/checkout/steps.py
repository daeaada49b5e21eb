"""The saga's steps, pure: the order they happen in, and what the sweeper does with a saga left at
each one by a crash. Nothing has been charged before `authorising`; the order exists from
`order_written`; the buyer's money is only taken (`captured`) once the order is confirmed.

Not every step is written to `checkout_sagas` on its own: `reserved` and `scored` recover exactly like
`started` (abandon), so the holds are recorded with `authorising` (or, with no card to charge, with
`order_written`, in the transaction that writes the order). A card-only checkout whose holds are all
fresh reserves, prices and scores with reads only, so its row is first written at `authorising` (with
its holds): nothing happened before that a crash would need undone. The steps still happen in this order."""

from __future__ import annotations

STEPS = (
    "started",
    "reserved",
    "scored",
    "authorising",
    "authorised",
    "order_written",
    "committed",
    "captured",
)
STATES = ("running", "done", "failed")


def recovery(step: str) -> str:
    """What the sweeper does with a running saga found at `step` after a crash:
    - 'abandon': nothing held money; mark failed.
    - 'void': an authorisation may exist (we may not even know its id): find and void it.
    - 'settle': the order row exists; re-commit the holds (idempotent) -> finish if all committed,
      else undo (return committed units, release the rest, void).
    - 'capture': the order is confirmed; capture the authorisation and finish.
    - 'finish': only bookkeeping left."""
    assert step in STEPS, step
    if step in ("started", "reserved", "scored"):
        return "abandon"
    if step in ("authorising", "authorised"):
        return "void"
    if step == "order_written":
        return "settle"
    if step == "committed":
        return "capture"
    return "finish"
