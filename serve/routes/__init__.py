"""Every router of the API, in the order they appear in the OpenAPI document."""
from serve.routes import health

ROUTERS = [health.router]
from serve.routes import auth as _auth; ROUTERS += [_auth.router, _auth.audit_router]  # noqa: E402,E702 - identity (issue 6)
from serve.routes import waiting_room as _wr; ROUTERS.append(_wr.router)  # noqa: E402,E702 - identity (issue 6)
from serve.routes import catalog as _catalog; ROUTERS.append(_catalog.router)  # noqa: E402,E702 - catalog (issue 4)
from serve.routes import cart as _cart, orders as _orders, payments as _payments; ROUTERS += [_cart.router, _orders.router, _payments.router]  # noqa: E402,E702 - purchase path (issue 5)
