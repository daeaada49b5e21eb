"""What each buyer will do, decided up front from the scenario and a seed (pure, no I/O), so a run is
reproducible and the drivers only execute plans."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from flashmart.sim.scenario import Scenario

GOOD_CARD = "pm_card_visa"  # 4242 4242 4242 4242: authorised
DECLINING_CARD = "pm_card_chargeCustomerFail"  # 4000 0000 0000 0341: declined when charged


@dataclass(slots=True)
class BuyerPlan:
    index: int
    user_id: int
    token: str
    arrival_s: float  # seconds after the sale opens
    sku: str
    quantity: int
    browse_product_id: int | None
    search_term: str | None
    abandon: bool
    first_card: str  # tried first
    retry_card: str | None  # after a decline; None = gives up
    guest_email: str | None = None  # buys as a guest (no token) giving this email
    card_of: int | None = None  # pays with the card of the buyer at this position (None: its own)


def arrival_offsets(scenario: Scenario, rng: random.Random) -> list[float]:
    n, window = scenario.buyers.count, scenario.buyers.arrival_window_s
    if scenario.buyers.arrival == "all_at_once" or window == 0:
        return [0.0] * n
    if scenario.buyers.arrival == "ramp":
        # arrival rate rises linearly to its peak at the end of the window: F(t) = (t / window)^2
        return sorted(window * math.sqrt((i + rng.random()) / n) for i in range(n))
    rate = n / window  # Poisson process: exponential gaps at the mean rate
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def make_plans(
    scenario: Scenario, buyers, hot, browse_ids: list[int], terms: list[str], seed: int = 7
) -> list[BuyerPlan]:
    rng = random.Random(seed)
    b, pay = scenario.behaviour, scenario.payments
    weights = [h.share for h in hot]
    plans = []
    emails = [b.email for b in buyers]
    for n, (buyer, arrival) in enumerate(zip(buyers, arrival_offsets(scenario, rng))):
        h = rng.choices(hot, weights)[0]
        guest_email = None
        if rng.random() < scenario.buyers.guest_share:
            shares = rng.random() < scenario.buyers.shared_email_share
            guest_email = rng.choice(emails) if shares else buyer.email
        card_of = (
            rng.randrange(len(buyers)) if rng.random() < scenario.buyers.shared_card_share else None
        )
        declines_always = rng.random() < pay.decline_rate
        declines_first = not declines_always and rng.random() < b.declining_card
        plans.append(
            BuyerPlan(
                index=buyer.index,
                user_id=buyer.user_id,
                token=buyer.token,
                arrival_s=arrival,
                sku=h.sku,
                quantity=rng.randint(1, min(scenario.buyers.quantity_max, h.per_buyer_limit)),
                browse_product_id=rng.choice(browse_ids)
                if browse_ids and rng.random() < b.browse
                else None,
                search_term=rng.choice(terms) if terms and rng.random() < b.search else None,
                abandon=rng.random() < b.abandon,
                first_card=DECLINING_CARD if (declines_always or declines_first) else GOOD_CARD,
                retry_card=None if declines_always else GOOD_CARD,
                guest_email=guest_email,
                card_of=None if card_of == n else card_of,
            )
        )
    return plans


def give_cards(plans: list[BuyerPlan], cards: list[str]) -> None:
    """Each buyer pays with their own card (`cards[i]` for plans[i]), or the one of the buyer the plan
    names (card_of), where the plan says a good one; a declining card stays the gateway's."""
    for i, plan in enumerate(plans):
        card = cards[plan.card_of if plan.card_of is not None else i]
        if plan.first_card == GOOD_CARD:
            plan.first_card = card
        if plan.retry_card == GOOD_CARD:
            plan.retry_card = card
