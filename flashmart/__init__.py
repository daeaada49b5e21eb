"""flashmart: the platform shell (settings, CLI, orchestration, observability)."""
