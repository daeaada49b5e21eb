"""Orders: the order lifecycle (pure), the orders/payments store port, and what orchestrates them."""
