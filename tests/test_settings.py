"""Settings refuse what would be unsafe with real money."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flashmart.settings import Settings


def test_a_live_stripe_key_needs_secrets_of_its_own():
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, stripe_secret_key="sk_live_abc")
    assert "FLASHMART_JWT_SECRET and FLASHMART_STRIPE_WEBHOOK_SECRET" in str(refused.value)
    with pytest.raises(ValidationError, match="FLASHMART_STRIPE_WEBHOOK_SECRET"):
        Settings(_env_file=None, stripe_secret_key="rk_live_abc", jwt_secret="x" * 32)
    ok = Settings(
        _env_file=None,
        stripe_secret_key="sk_live_abc",
        jwt_secret="x" * 32,
        stripe_webhook_secret="whsec_real",
    )
    assert ok.stripe_secret_key == "sk_live_abc"
    assert Settings(_env_file=None).stripe_secret_key.startswith(
        "sk_test_"
    )  # development needs nothing set
