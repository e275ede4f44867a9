"""How tagnet's table path scales: wall time and peak RSS of train, evaluate and predict on synthetic sparse tables.

Part 1 (--shapes): tables shaped like MULAN's bibtex, delicious and tmc2007-500 (benchmarks/synthetic_tables.py):
the default `tagnet train NAME-train.arff` against a plain scikit-learn OneVsRestClassifier(LogisticRegression()) fit
on the same rows in the same run (CSR features, as scikit-multilearn's ARFF loader gives them; and the dense rows, as
a dense reader gives them), and the micro-F1 of both on NAME-test.arff (tagnet at its fitted thresholds, `tagnet
evaluate --json`; scikit-learn at p >= 0.5).
Part 2 (--grid): tables of LABELS x ROWS (sparse 0/1 features): `tagnet train --select linear`, `tagnet evaluate`
and `tagnet predict` each in its own process, wall time and that process's peak RSS; the cost curves are plotted
into OUT/scale.html (matplotlib, the tune extra).

Run: python benchmarks/scale.py [--shapes bibtex tmc2007 delicious] [--grid 100x10000 1000x10000 ...]
     [--out benchmarks/out/scale] [--train-args '']
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_tables import SHAPES, Shape, make_table, write_shape, write_sparse_arff  # noqa: E402


def timed(command: list[str]) -> dict:
    """Run `command`; its wall seconds and peak RSS (GB) from its own resource usage; raises on failure."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read()[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2)}


def sklearn_baseline(train: Path, test: Path) -> dict:
    """Plain one-vs-rest logistic regression (scikit-learn's defaults) on the features as a CSR matrix and as the dense
    array the rows were read into (a dense ARFF or CSV reader's float32 rows): fit seconds of each, test micro-F1 (the
    CSR fit's; both solve the same problem)."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from tagnet.data.feature_table import read_feature_table

    tables = [read_feature_table(path) for path in (train, test)]
    dense = np.nan_to_num(tables[0].features)
    x_train, x_test = sp.csr_matrix(dense), sp.csr_matrix(np.nan_to_num(tables[1].features))

    def fitted(x) -> tuple[OneVsRestClassifier, float]:
        started = time.perf_counter()
        model = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(x, tables[0].labels.targets)
        return model, round(time.perf_counter() - started, 1)

    model, seconds = fitted(x_train)
    micro = f1_score(tables[1].labels.targets, model.predict(x_test), average="micro")
    return {"fit_seconds": seconds, "dense_fit_seconds": fitted(dense)[1], "micro_f1": round(float(micro), 4)}


def run_shape(name: str, out: Path) -> dict:
    """Part 1 for one shape: tagnet's default train and its test micro-F1 beside scikit-learn's."""
    train, test = write_shape(name, out / "tables")
    run = out / "runs" / name
    found = timed(["tagnet", "train", str(train), "--out", str(run), "--force"])
    report = out / "runs" / f"{name}-test.json"
    timed(["tagnet", "evaluate", str(run), str(test), "--json", str(report)])
    selection = json.loads((run / "metrics.json").read_text()).get("selection", {})
    row = {"shape": name, "train_seconds": found["seconds"], "train_peak_rss_gb": found["peak_rss_gb"],
           "micro_f1": round(json.loads(report.read_text())["micro_f1"], 4), "choice": selection.get("choice"),
           "candidate_seconds": {k: v["seconds"] for k, v in selection.get("candidates", {}).items()},
           "sklearn": sklearn_baseline(train, test)}
    row["ratio"] = round(row["train_seconds"] / row["sklearn"]["fit_seconds"], 2)
    row["ratio_to_dense"] = round(row["train_seconds"] / row["sklearn"]["dense_fit_seconds"], 2)
    print(json.dumps(row), flush=True)
    return row


def run_point(labels: int, rows: int, out: Path, train_args: tuple[str, ...] = ("--select", "linear")) -> dict:
    """Part 2 for one point: train (with `train_args`: --select linear unless --train-args says otherwise), evaluate
    and predict on a LABELS x ROWS sparse table."""
    shape = Shape(labels, rows, rows // 10, features=1000, cardinality=4.0, background=20.0, signal=8, on=0.3)
    features, targets = make_table(shape, rows=shape.train + shape.test, seed=1)
    folder = out / "tables" / f"{labels}x{rows}"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"grid{labels}x{rows}"
    train = write_sparse_arff(folder / f"{name}-train.arff", features[:rows], targets[:rows], relation=name)
    test = write_sparse_arff(folder / f"{name}-test.arff", features[rows:], targets[rows:], relation=name)
    run = out / "runs" / name
    row = {"labels": labels, "rows": rows,
           "train": timed(["tagnet", "train", str(train), "--out", str(run), *train_args, "--force"]),
           "evaluate": timed(["tagnet", "evaluate", str(run), str(test), "--json", str(run / "test.json")]),
           "predict": timed(["tagnet", "predict", str(run), str(test), "--output", str(run / "predictions.csv")])}
    print(json.dumps(row), flush=True)
    return row


def write_html(points: list[dict], path: Path) -> Path:
    """The cost curves (wall seconds and peak RSS against labels x rows, one line per phase) as one HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [p["labels"] * p["rows"] for p in points]
    order = np.argsort(cells)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for phase in ("train", "evaluate", "predict"):
        axes[0].loglog(np.array(cells)[order], [points[i][phase]["seconds"] for i in order], "o-", label=phase)
        axes[1].loglog(np.array(cells)[order], [points[i][phase]["peak_rss_gb"] for i in order], "o-", label=phase)
    for axis, what in zip(axes, ("wall seconds", "peak RSS (GB)")):
        axis.set_xlabel("labels x rows")
        axis.set_ylabel(what)
        axis.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    rows = "".join(f"<tr><td>{p['labels']}</td><td>{p['rows']}</td>" + "".join(
        f"<td>{p[k]['seconds']}</td><td>{p[k]['peak_rss_gb']}</td>" for k in ("train", "evaluate", "predict"))
        + "</tr>" for p in points)
    path.write_text("<!doctype html><meta charset='utf-8'><title>tagnet scale</title><h1>tagnet: cost against labels "
                    f"x rows</h1><img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
                    "<table border=1><tr><th>labels</th><th>rows</th><th>train s</th><th>train GB</th><th>evaluate s"
                    "</th><th>evaluate GB</th><th>predict s</th><th>predict GB</th></tr>" + rows + "</table>\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["bibtex", "tmc2007", "delicious"], choices=sorted(SHAPES))
    parser.add_argument("--grid", nargs="*", default=["100x10000", "1000x10000", "100x100000"],
                        help="LABELSxROWS points of part 2")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/scale"))
    parser.add_argument("--train-args", default="--select linear",
                        help="options of part 2's tagnet train ('' for the default command)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"shapes": [run_shape(name, args.out) for name in args.shapes],
               "grid": [run_point(*map(int, point.split("x")), args.out, tuple(args.train_args.split()))
                        for point in args.grid]}
    (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    if results["grid"]:
        print("cost curves:", write_html(results["grid"], args.out / "scale.html"))


if __name__ == "__main__":
    main()
