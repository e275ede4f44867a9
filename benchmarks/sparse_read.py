"""Reading a wide sparse table as training does: wall time and peak RSS of the sparse ARFF read, the scaling and the
head's inputs (tagnet's tabular modality), on the synthetic LABELS x ROWS table of benchmarks/scale.py's grid.

Each point runs in its own child process (peak RSS is that process's). Nothing is trained.

Run: python benchmarks/sparse_read.py [--points 10000x100000] [--out benchmarks/out/sparse-read]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_tables import Shape, make_table, write_sparse_arff  # noqa: E402


def write_point(labels: int, rows: int, out: Path) -> Path:
    """The grid's training file of LABELS x ROWS (1,000 0/1 features, 4 labels and 20 background words a row)."""
    path = out / f"grid{labels}x{rows}-train.arff"
    if not path.is_file():
        shape = Shape(labels, rows, 0, features=1000, cardinality=4.0, background=20.0, signal=8, on=0.3)
        features, targets = make_table(shape, rows=rows, seed=1)
        out.mkdir(parents=True, exist_ok=True)
        write_sparse_arff(path, features, targets, relation=f"grid{labels}x{rows}")
    return path


def measure(path: str) -> dict:
    """In this process: read the table as `tagnet train` does, fit the scaling, build the head's inputs."""
    import numpy as np

    from tagnet.config.source import DataSource
    from tagnet.modalities.tabular import TabularModality

    kind, started = TabularModality(), time.perf_counter()
    data = kind.read(DataSource(path))
    read = time.perf_counter() - started
    state = kind.fit_state(None, data, np.arange(len(data)), text_column=None, read_options={})
    inputs = kind.head_inputs(None, data, state, cache_dir=Path("."), progress=False).values
    return {"rows": len(data), "labels": data.table.num_labels, "read_seconds": round(read, 1),
            "inputs_seconds": round(time.perf_counter() - started - read, 1), "inputs": type(inputs).__name__,
            "nonzeros": int(getattr(inputs, "nnz", 0)),
            "label_table_gb": round((data.table.targets.nbytes + data.table.known.nbytes) / 2**30, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="+", default=["10000x100000"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/sparse-read"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    for point in args.points:
        labels, rows = map(int, point.split("x"))
        path = write_point(labels, rows, args.out)
        found = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                               check=True)
        print(json.dumps({"point": point, "file_mb": round(path.stat().st_size / 2**20, 1),
                          **json.loads(found.stdout.strip().splitlines()[-1])}), flush=True)


if __name__ == "__main__":
    main()
