"""`tagnet data check` with very many labels: read a wide one-hot CSV, then check a 100,000-label table.

python benchmarks/wide_labels.py [--labels 40000] [--rows 300] [--table-labels 100000] [--table-rows 3000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from tagnet.data.check import check_dataset
from tagnet.data.labels import read_labels
from tagnet.data.label_table import LabelTable


def multi_hot(rows: int, labels: int, seed: int = 0) -> np.ndarray:
    """1 to 7 random labels per row."""
    rng = np.random.default_rng(seed)
    targets = np.zeros((rows, labels), dtype=np.uint8)
    for i in range(rows):
        targets[i, rng.choice(labels, size=rng.integers(1, 8), replace=False)] = 1
    return targets


def peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=40_000)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--table-labels", type=int, default=100_000)
    parser.add_argument("--table-rows", type=int, default=3000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wide.csv"
        targets = multi_hot(args.rows, args.labels)
        with path.open("w") as handle:
            handle.write("image," + ",".join(f"l{j}" for j in range(args.labels)) + "\n")
            for i, row in enumerate(targets):
                handle.write(f"img{i}.jpg," + ",".join(map(str, row)) + "\n")
        started = time.perf_counter()
        table = read_labels(path)
        read = time.perf_counter() - started
        report = check_dataset(table)
        print(f"one-hot file {args.rows} rows x {args.labels} labels: read {read:.1f} s, "
              f"check {time.perf_counter() - started - read:.2f} s, peak {peak_mib()} MiB, "
              f"top pair {report.top_pairs[0]}")

    targets = multi_hot(args.table_rows, args.table_labels, seed=1)
    table = LabelTable([f"i{i}" for i in range(args.table_rows)], [f"l{j:06d}" for j in range(args.table_labels)],
                       targets, np.ones(targets.shape, dtype=bool))
    before = peak_mib()
    started = time.perf_counter()
    report = check_dataset(table)
    print(f"table {args.table_rows} rows x {args.table_labels} labels: check {time.perf_counter() - started:.2f} s, "
          f"peak {peak_mib()} MiB (table alone {before} MiB), {len(report.problems)} problems")


if __name__ == "__main__":
    main()
