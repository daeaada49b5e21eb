"""Load drivers: http (the real API) and actors (the inventory engine directly)."""
