"""Fast JSON answers for the hot routes: orjson straight into the response, without FastAPI's
jsonable_encoder walk (which cost more than the route's own work on a cart or product page)."""

from __future__ import annotations

from decimal import Decimal

import orjson
from fastapi import Response


def _default(value):
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(content, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, default=_default),
        status_code=status_code,
        media_type="application/json",
    )
