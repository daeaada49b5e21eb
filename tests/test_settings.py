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


@pytest.mark.parametrize(
    "exposure, reason",
    [
        ({"http_host": "0.0.0.0"}, "beyond loopback"),
        ({"http_host": "10.1.2.3"}, "beyond loopback"),
        ({"http_host": "shop.example.com"}, "beyond loopback"),
        ({"env": "production"}, "FLASHMART_ENV=production"),
    ],
)
def test_public_development_secrets_are_refused_when_the_api_is_exposed(exposure, reason):
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **exposure)
    message = str(refused.value)
    assert reason in message
    assert "FLASHMART_JWT_SECRET and FLASHMART_STRIPE_WEBHOOK_SECRET" in message
    with pytest.raises(ValidationError, match="FLASHMART_STRIPE_WEBHOOK_SECRET"):
        Settings(_env_file=None, jwt_secret="k" * 32, **exposure)
    own = Settings(
        _env_file=None, jwt_secret="k" * 32, stripe_webhook_secret="whsec_own", **exposure
    )
    assert own.jwt_secret == "k" * 32


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_development_needs_no_secret(host):
    assert Settings(_env_file=None, http_host=host).env == "development"


def test_hs256_key_has_at_least_32_bytes():
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None, jwt_secret="x" * 31)
    assert Settings(_env_file=None, jwt_secret="é" * 16).jwt_secret  # 32 bytes in UTF-8


def test_a_private_platform_gets_a_free_port_for_every_listener(tmp_path):
    s = Settings.on_free_ports(tmp_path, http_port=18123, hold_ttl_s=60)
    ports = [getattr(s, name) for name in Settings.LISTENER_PORTS]
    assert len(set(ports)) == len(ports)  # none shared, none left at its default
    defaults = Settings(_env_file=None)
    assert not {getattr(defaults, n) for n in Settings.LISTENER_PORTS} & set(ports) - {18123}
    assert (s.http_port, s.hold_ttl_s, s.data_dir) == (18123, 60, tmp_path)  # overrides win
