"""Time `tagnet evaluate`, `predict` and `report` of a finished run under two source trees, side by side.

    python benchmarks/evalmem.py RUN TEST_FILE --trees before=/tmp/old/src after=src --out OUT.json [--skip report]

Each command runs in its own process with PYTHONPATH set to the tree (scale.timed: wall seconds and the process's
own peak RSS from os.wait4), the trees alternating command by command so that they share the machine's load;
`uptime` is recorded before each. The predictions CSVs of the trees are compared byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import timed  # noqa: E402


def _commands(run: Path, test: Path, work: Path) -> dict[str, list[str]]:
    return {"evaluate": ["tagnet", "evaluate", str(run), str(test), "--json", str(work / "test.json")],
            "predict": ["tagnet", "predict", str(run), str(test), "--output", str(work / "predictions.csv")],
            "report": ["tagnet", "report", str(run), "--out", str(work / "report.html")]}


def main() -> None:
    """Parse the arguments, run each command under each tree, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("--trees", nargs="+", required=True, help="NAME=SRC_FOLDER")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip", nargs="*", default=[], help="commands not to run (evaluate, predict, report)")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees)
    results: dict = {}
    for name in ("evaluate", "predict", "report"):
        if name in args.skip:
            continue
        for tree, src in trees.items():
            work = args.out.parent / f"{args.out.stem}-{tree}"
            work.mkdir(parents=True, exist_ok=True)
            os.environ["PYTHONPATH"] = str(Path(src).resolve())
            load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[1].strip()
            results.setdefault(name, {})[tree] = {**timed(_commands(args.run, args.test, work)[name]), "load_before": load}
            print(name, tree, results[name][tree], flush=True)
    if "predict" not in args.skip and len(trees) == 2:
        a, b = (args.out.parent / f"{args.out.stem}-{tree}" / "predictions.csv" for tree in trees)
        results["predictions_identical"] = filecmp.cmp(a, b, shallow=False)
    if "evaluate" not in args.skip:
        results["metrics"] = {tree: {k: v for k, v in json.loads(
            (args.out.parent / f"{args.out.stem}-{tree}" / "test.json").read_text()).items()
            if isinstance(v, (int, float)) or v is None} for tree in trees}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
