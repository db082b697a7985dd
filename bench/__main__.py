"""`python -m bench [operator|drift|agent|dataset|quality] [ARGS]`: the benchmarks, each writing its section of
docs/benchmarks.md.

    python -m bench                      # all, with their defaults
    python -m bench operator [--n 1000]  # the operator at scale (bench/operator_bench.py, its own local cluster)
    python -m bench drift [--quick]      # drift statistics (bench/drift_bench.py)
    python -m bench agent [--quick]      # the inference agent's overhead and a stalled sink (bench/agent_bench.py)
    python -m bench dataset [--hours N]  # a DriftMonitor window over a long prediction log (bench/dataset_bench.py)
    python -m bench quality [--quick]    # model checks vs Evidently and NannyML (bench/quality_bench.py)

Arguments after the name pass through to that benchmark.
"""

import pathlib
import runpy
import sys

HERE = pathlib.Path(__file__).resolve().parent
BENCHES = {"operator": HERE / "operator_bench.py", "drift": HERE / "drift_bench.py",
           "agent": HERE / "agent_bench.py", "dataset": HERE / "dataset_bench.py",
           "quality": HERE / "quality_bench.py"}


def run(name: str, args: list[str]) -> None:
    path = BENCHES[name]
    sys.argv = [str(path), *args]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as done:
        if done.code not in (None, 0):
            raise


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in BENCHES:
        run(args[0], args[1:])
    elif not args:
        for name in BENCHES:
            run(name, [])
    else:
        sys.exit(f"usage: python -m bench [{'|'.join(BENCHES)}] [ARGS]  (unknown: {args[0]})")


main()
