"""Capacity benchmarks: `python -m benchmarks` (or `make bench`, `make bench-quick`).

Every figure is measured next to what a user would pick instead, on the same machine in the same
run: these machines are noisy, so the ratios matter more than the absolute numbers. Timing never
belongs in the test suite; `make bench-check` compares the ratios with benchmarks/baseline.json.
"""
