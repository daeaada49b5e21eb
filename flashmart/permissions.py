"""Roles and the permission table: the one place that says who may do what.

Routes declare a permission with `Depends(require("order.checkout"))`; ownership (a customer's own
order, a seller's own product, a courier's assigned shipment) is checked by the route against the
data. Need a new permission? Add one line here.
"""

from __future__ import annotations

CUSTOMER, SELLER, ADMIN, SUPPORT, COURIER = "customer", "seller", "admin", "support", "courier"
ROLES: tuple[str, ...] = (CUSTOMER, SELLER, ADMIN, SUPPORT, COURIER)


def _roles(*names: str) -> frozenset[str]:
    unknown = set(names) - set(ROLES)
    assert not unknown, f"unknown roles in permission table: {unknown}"
    return frozenset(names)


PERMISSIONS: dict[str, frozenset[str]] = {
    # inventory and warehouses
    "inventory.read": _roles(SELLER, ADMIN, SUPPORT),
    "inventory.write": _roles(SELLER, ADMIN),
    "warehouse.write": _roles(ADMIN),
    "flash_sale.write": _roles(SELLER, ADMIN),
    # catalog
    "product.write": _roles(SELLER, ADMIN),
    "product.import": _roles(SELLER, ADMIN),
    "search.admin": _roles(ADMIN),  # rebuild the search index, see its status
    "review.write": _roles(CUSTOMER),  # review a product bought (the route checks the purchase)
    "review.moderate": _roles(SUPPORT, ADMIN),  # remove an abusive review
    "review.vote": _roles(CUSTOMER),  # mark another buyer's review helpful
    "review.report": _roles(CUSTOMER),  # report a review to moderation
    "review.reply": _roles(SELLER),  # the product's seller answers a review, once
    # buying
    "cart.use": _roles(CUSTOMER),
    "order.checkout": _roles(CUSTOMER),
    "order.read": _roles(CUSTOMER, SELLER, ADMIN, SUPPORT),
    "order.cancel": _roles(CUSTOMER, SUPPORT, ADMIN),
    "order.review": _roles(SUPPORT, ADMIN),
    "order.list": _roles(SELLER, SUPPORT, ADMIN),  # a seller: orders with their products' lines
    "waiting_room.join": _roles(CUSTOMER),
    # fulfilment and after-sales
    "shipment.read": _roles(CUSTOMER, SELLER, COURIER, SUPPORT, ADMIN),
    "shipment.update": _roles(COURIER, ADMIN),
    "shipment.assign": _roles(ADMIN),
    "return.request": _roles(CUSTOMER),
    "return.review": _roles(SUPPORT, ADMIN),
    "refund.issue": _roles(SUPPORT, ADMIN),
    "promotion.write": _roles(ADMIN),  # coupons, gift cards, store credit
    # memberships and digital content
    "membership.use": _roles(CUSTOMER),  # subscribe, change plan, cancel, resume: one's own
    "membership.admin": _roles(ADMIN),  # plans, members, subscription metrics
    "content.read": _roles(CUSTOMER, SELLER, ADMIN, SUPPORT),  # the entitlement is checked too
    "content.write": _roles(SELLER, ADMIN),  # upload (a seller: their own items)
    # back office
    "invoice.read": _roles(CUSTOMER, SELLER, ADMIN, SUPPORT),  # own orders / own lines / all
    "seller.fulfil": _roles(SELLER),  # the lines of their products: ship, track, returns
    "ticket.open": _roles(CUSTOMER),
    "ticket.read": _roles(CUSTOMER, SUPPORT, ADMIN),  # a customer their own, staff all
    "ticket.reply": _roles(CUSTOMER, SUPPORT, ADMIN),
    "ticket.manage": _roles(SUPPORT, ADMIN),  # assign, priority, status, SLA breaches
    "report.read": _roles(SELLER, ADMIN),  # a seller: their own products only
    "report.admin": _roles(ADMIN),  # shop-wide only (searches)
    "reorder.write": _roles(SELLER, ADMIN),  # suppliers, reorder rules, purchase orders (own SKUs)
    "purchase_order.receive": _roles(SELLER, ADMIN),  # adds stock: audited
    "carrier.quote": _roles(CUSTOMER, SELLER, ADMIN, SUPPORT),
    "carrier.label": _roles(SELLER, ADMIN),  # the seller of the shipment's lines
    # administration
    "user.admin": _roles(ADMIN),
    "audit.read": _roles(ADMIN, SUPPORT),
    "health.details": _roles(ADMIN, SUPPORT),  # /readyz with each failing part's error text
}


def allowed(role: str, permission: str) -> bool:
    """True when `role` holds `permission`; an unknown permission is a programming error."""
    assert permission in PERMISSIONS, (
        f"unknown permission {permission!r}: add it to flashmart/permissions.py"
    )
    return role in PERMISSIONS[permission]
