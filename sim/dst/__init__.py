"""A deterministic simulator of the inventory shard engine (`python -m flashmart.sim.dst`)."""
