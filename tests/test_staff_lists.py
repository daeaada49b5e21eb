"""The admin lists' input rules without a platform (the lists themselves are driven in a browser:
tests/browser/test_admin_portal.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from flashmart.serve.errors import Refused
from flashmart.serve.routes.staff_lists import _window


def test_an_order_list_window_mixing_zoned_and_plain_times_is_read_as_utc():
    since, until = _window(dt.datetime(2026, 1, 1), dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert since.tzinfo is dt.UTC and until > since
    with pytest.raises(Refused, match="after"):
        _window(dt.datetime(2026, 2, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 1))
