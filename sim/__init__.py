"""Simulators and synthetic data (catalog generator, load scenarios)."""
