"""Which functions of a driver cost more per trial in a larger study: two cProfile dumps, side by side.

    python bench/study_scale.py --sizes --ray 100 1000 --profile prof --no-docs
    python bench/profile_growth.py prof/ray_100.prof 100 prof/ray_1000.prof 1000

Prints, per function, the cumulative milliseconds per trial in each run and the difference, largest
growth first: what makes the driver's per-trial cost grow with the study.
"""

from __future__ import annotations

import argparse
import pstats


def per_trial_ms(path: str, trials: int) -> dict[tuple, float]:
    """Cumulative milliseconds per trial of every function in a cProfile dump."""
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    return {(f.split("site-packages/")[-1], line, name): 1000 * ct / trials
            for (f, line, name), (_, _, _, ct, _) in stats.items()}


def main() -> None:
    """Print the top growing functions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("small")
    parser.add_argument("small_trials", type=int)
    parser.add_argument("large")
    parser.add_argument("large_trials", type=int)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    a, b = per_trial_ms(args.small, args.small_trials), per_trial_ms(args.large, args.large_trials)
    rows = sorted(((b.get(k, 0) - a.get(k, 0), a.get(k, 0), b.get(k, 0), k) for k in a.keys() | b.keys()), reverse=True)
    print(f"{'growth':>9} {args.small_trials:>9} {args.large_trials:>9}  ms per trial, cumulative")
    for growth, small, large, (where, line, name) in rows[: args.top]:
        print(f"{growth:9.2f} {small:9.2f} {large:9.2f}  {where}:{line} {name}")


if __name__ == "__main__":
    main()
