"""Every router of the API, in the order they appear in the OpenAPI document."""

from flashmart.serve.routes import (
    admin_search,
    auth,
    carriers,
    cart,
    catalog,
    content,
    health,
    inventory,
    invoices,
    membership,
    orders,
    payments,
    reordering,
    reports,
    reviews,
    seller,
    tickets,
    waiting_room,
)
from flashmart.serve.web import pages as web_pages

ROUTERS = [
    health.router,
    auth.router,
    auth.audit_router,
    catalog.router,
    reviews.router,
    inventory.router,
    waiting_room.router,
    cart.router,
    orders.router,
    payments.router,
    admin_search.router,
    membership.router,
    membership.admin_router,
    content.router,
    content.admin_router,
    web_pages.router,  # the storefront, admin and courier pages (not in the OpenAPI document)
    invoices.router,
    seller.router,
    tickets.router,
    reports.router,
    reordering.router,
    carriers.router,
]
