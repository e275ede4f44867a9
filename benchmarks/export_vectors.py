"""ONNX export of text and tabular models: parity, size, scores and speed on ONNX Runtime vs PyTorch.

Takes trained runs (by default the fine-tuned GoEmotions run of `benchmarks/goemotions.py --finetune` and a
MULAN yeast run of `benchmarks/mulan.py`), copies each artifact, runs `tagnet export --quantize` on the copy,
then scores the held-out file (GoEmotions dev.tsv; yeast-test.arff) with PyTorch, the float ONNX model and
the int8 one, and times prediction of every item of that file with each (one pass after a warm-up pass,
batch 64, the predictor's own batching: texts sorted by length).

Run: python benchmarks/export_vectors.py [--text RUN] [--tabular RUN] [--out benchmarks/out/export_vectors]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from tagnet.data.labels import read_labels_with_texts
from tagnet.data.feature_table import read_feature_table
from tagnet.evaluation.evaluate import evaluate
from tagnet.inference.export import export_onnx
from tagnet.predict_vectors import VectorPredictor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GOEMOTIONS_DEV = SHARED / "goemotions" / "dev.tsv"
YEAST_TEST = SHARED / "mulan" / "yeast" / "yeast-test.arff"


def _inputs(predictor: VectorPredictor, held_out: Path):
    """The held-out file's texts or feature rows, and the predictor method that takes them."""
    if predictor.modality == "text":
        _, texts = read_labels_with_texts(held_out, text_column=predictor.extra["text_column"],
                                          **predictor.extra.get("read_options", {}))
        return texts, predictor.predict_proba_texts
    return read_feature_table(held_out).features, predictor.predict_proba_rows


def measure(run: Path, held_out: Path, *, out: Path) -> dict:
    """Export a copy of `run`'s artifact and compare the three runtimes on `held_out`."""
    folder = out / run.name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(run / "artifact", folder)
    started = time.perf_counter()
    report = export_onnx(folder, quantize=True)
    row = {"run": str(run), "export_s": round(time.perf_counter() - started, 1), "export": report.to_dict()}
    for name, options in {"torch": {"runtime": "torch"}, "onnx": {"runtime": "onnx"},
                          "int8": {"runtime": "onnx", "onnx_file": "model.int8.onnx"}}.items():
        predictor = VectorPredictor(folder, **options)
        items, predict = _inputs(predictor, held_out)
        predict(items[:256])  # warm-up
        started = time.perf_counter()
        predict(items)
        seconds = time.perf_counter() - started
        metrics, _ = evaluate(predictor, held_out)
        row[name] = {"items_per_s": round(len(items) / seconds, 1), "macro_f1": round(metrics.macro_f1, 4),
                     "micro_f1": round(metrics.micro_f1, 4), "mAP": round(metrics.mAP, 4),
                     "hamming_loss": round(metrics.hamming_loss, 4)}
        print(json.dumps({"run": run.name, "runtime": name, **row[name]}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=Path("benchmarks/out/goemotions/train-finetune1"))
    parser.add_argument("--tabular", type=Path, default=Path("benchmarks/out/mulan/yeast-seed0"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/export_vectors"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [measure(args.text, GOEMOTIONS_DEV, out=args.out), measure(args.tabular, YEAST_TEST, out=args.out)]
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        export = row["export"]
        print(f"\n{row['run']}: exported in {row['export_s']} s, {export['size_bytes'] / 1e6:.1f} MB "
              f"(int8 {export['int8_size_bytes'] / 1e6:.1f} MB), max |diff| {export['parity_max_abs_diff']:.1e} "
              f"(int8 {export['int8_max_abs_diff']:.1e})")
        print("| runtime | items/s | macro-F1 | micro-F1 | mAP | Hamming loss |\n|---|---|---|---|---|---|")
        for name in ("torch", "onnx", "int8"):
            r = row[name]
            print(f"| {name} | {r['items_per_s']} | {r['macro_f1']} | {r['micro_f1']} | {r['mAP']} | {r['hamming_loss']} |")


if __name__ == "__main__":
    main()
