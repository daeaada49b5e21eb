"""Every router of the API, in the order they appear in the OpenAPI document.

A request is routed by walking this list (FastAPI's router, and Ray Serve's again for its route
metric): the flash sale's hot add-to-cart comes right after /healthz, then the catalog (product
pages and search), so they do not pay for the path patterns of every route before them (that walk
cost an add several times a /healthz request)."""

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
    media,
    membership,
    orders,
    payments,
    product_images,
    recommendations,
    reordering,
    reports,
    reviews,
    seller,
    staff_lists,
    tickets,
    waiting_room,
)
from flashmart.serve.web import pages as web_pages

ROUTERS = [
    health.router,
    cart.add_router,  # add-to-cart: its rate limit is taken in its cart write; first (see above)
    catalog.router,
    auth.router,
    auth.audit_router,
    auth.users_router,
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
    recommendations.router,
    media.router,
    product_images.router,
    web_pages.router,  # the storefront, admin and courier pages (not in the OpenAPI document)
    invoices.router,
    seller.router,
    tickets.router,
    reports.router,
    reordering.router,
    carriers.router,
    staff_lists.router,
    staff_lists.users_router,
]
