"""`python -m sim SCENARIO [--driver http|actors] [--out DIR] [--catalog-products N]`: run a flash-sale
scenario against the running platform (settings from the environment, like `flashmart`).
Exit status 1 when an invariant fails."""
from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("scenario", help="smoke, black-friday, chaos, or a path to a scenario file")
    parser.add_argument("--driver", choices=("http", "actors"), default=None)
    parser.add_argument("--out", default=None, help="directory for report.json and the PNG plots")
    parser.add_argument("--catalog-products", type=int, default=None)
    args = parser.parse_args()

    from flashmart.settings import Settings
    from sim.runner import run_scenario_by_name

    settings = Settings().resolved()
    ok = run_scenario_by_name(settings, args.scenario, catalog_products=args.catalog_products, driver=args.driver,
                              out_dir=args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
