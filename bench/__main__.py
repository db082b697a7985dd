"""`python -m bench [ARGS]`: the drift statistics benchmark (args pass through; --quick for a short run)."""

import runpy
import sys

sys.argv = ["bench/drift_bench.py", *sys.argv[1:]]
runpy.run_path("bench/drift_bench.py", run_name="__main__")
