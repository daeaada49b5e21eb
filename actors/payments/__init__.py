"""Payments: a pool of actors around the official Stripe SDK, paced to the gateway's rate limit."""
