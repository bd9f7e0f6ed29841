#!/usr/bin/env python
"""Does the search beat chance at equal compute? Strategies x seeds, then compare.

    python benchmarks/search_quality.py                      # digits: 3 strategies x 5 seeds
    python benchmarks/search_quality.py --conf benchmark_digits_cheap --out runs/sq_cheap
    python benchmarks/search_quality.py --conf my.yaml --dataset-root /data/x \\
        --strategies petridish,random_search --seeds 0,1,2 --set search.max_trials=60
    python benchmarks/search_quality.py --variant fresh:search.finalize_init=fresh

Every (strategy, variant, seed) is an ordinary run directory under --out, made by
`scripts/search.py`, so an interrupted benchmark resumes where it stopped (finished runs
are not trained again) and each run can be inspected like any other. Then
`petrinas.compare` writes compare.md / .tex and the figures into --out. Every run of a
seed gets the same config but for its strategy (and variant): same data, trainer,
budgets and seed models, so the groups differ in the search alone. The default config,
confs/benchmark_digits.yaml, gives every run the same compute (search.max_compute_hours,
device seconds summed over trials), so a strategy whose trials cost more gets fewer.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conf", default="benchmark_digits", help="config file or name")
    p.add_argument("--strategies", default="petridish,random_selection,random_search")
    p.add_argument("--seeds", default="0,1,2,3,4", help="run seeds, comma-separated")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,...]",
                   help="an extra group of petridish runs with these overrides")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="overrides for every run")
    p.add_argument("--dataset-root", help="sets dataset.root for every run")
    p.add_argument("--out", default="runs/search_quality")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs at once (each then gets resources.max_concurrent=2/N; "
                        "compute is counted in CPU seconds on CPU, so sharing the cores "
                        "does not inflate it)")
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> list[tuple[Path, list[str]]]:
    """(run directory, --set overrides) of every run."""
    common = list(args.overrides)
    if args.dataset_root:
        common.append(f"dataset.root={args.dataset_root}")
    if args.parallel > 1:
        common.append(f"resources.max_concurrent={max(1, 2 // args.parallel)}")
    groups = [(s, [f"search.strategy={s}"]) for s in args.strategies.split(",") if s]
    for variant in args.variant:
        name, _, sets = variant.partition(":")
        groups.append((name, ["search.strategy=petridish", *sets.split(",")]))
    return [(Path(args.out) / name / f"seed{seed}", [*common, *sets, f"seed={seed}"])
            for seed in args.seeds.split(",") for name, sets in groups]


def run_one(conf: str, out: Path, sets: list[str]) -> tuple[Path, float, int]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "search.py"), "--conf", conf,
                           "--out", str(out), "--quiet", "--set", *sets],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(f"{out}: exit {done.returncode}\n{done.stderr}")
    return out, time.perf_counter() - start, done.returncode


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = plan(args)
    print(f"{len(runs)} runs of {args.conf} into {args.out} ({args.parallel} at a time)")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(lambda r: run_one(args.conf, *r), runs))
    for out, seconds, code in results:
        print(f"  {out}: {seconds:7.1f} s" + ("" if code == 0 else f"  (exit {code})"))
    wall = time.perf_counter() - start
    if any(code != 0 for _, _, code in results):
        return 1
    sys.path.insert(0, str(REPO))
    from petrinas.compare import compare

    compare([out for out, _, _ in results], args.out)
    print(f"wall time {wall / 60:.1f} min\n")
    print((Path(args.out) / "compare.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
