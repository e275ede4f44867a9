"""GoEmotions (28 labels): frozen all-MiniLM-L6-v2 embeddings + a trained head, scored on the dev split.

Reads the release files with options only (as `tagnet train train.tsv --text-column 0 --no-header
--id-column 2 --label-names labels.txt` does): train on train.tsv with 10% of it split off for early
stopping and the per-label thresholds, then `evaluate` on dev.tsv (never seen in training). Reports
macro/micro-F1, mAP and the mean per-label calibration error (ECE) on dev, the time to embed the texts
(first run; cached on disk afterwards), the head's training time and the peak resident memory.
With --finetune, also fine-tunes the whole encoder after the head (2 epochs, batch 32, lr 5e-5) on all
training texts; with --finetune N on the first N only, next to the frozen encoder on the same N texts.
With --ensemble K, also K frozen-encoder heads averaged (`tagnet train --ensemble K`, a split per head).
With --default, only the default command, as a user types it, in a child process (its wall time and peak RSS):
`tagnet train train.tsv ... --val dev.tsv` (dev is then the validation set: early stopping and thresholds are fitted
on it), scored on dev; with --default holdout, `--set val_fraction=0.1` instead of --val (dev untouched).

With --study, where a text run's minutes pay (issue 25): the first 5,000 training texts, dev.tsv parted at random
(seed 0) into halves A and B; each run trains with --val A (which the run slices into early-stopping rows and
threshold rows) and is scored on B, which no choice saw: head epochs, a fine-tuning pass or two, the losses (forced,
next to --loss auto's probe), and, from each run's probabilities of B, the thresholds fitted on A's threshold rows
(the new rule), on all of A (the old rule: on the rows that chose the epoch too) and p >= 0.5.

Run: python benchmarks/goemotions.py [--out benchmarks/out/goemotions] [--finetune [N]] [--ensemble K]
     python benchmarks/goemotions.py --default [dev|holdout] [--time-budget 15m] [--train-args "--set KEY=VALUE"]
     python benchmarks/goemotions.py --study [--study-runs head15,finetune1,...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from tagnet.config.settings import TrainConfig
from tagnet.data.labels import read_labels_with_texts
from tagnet.evaluation.evaluate import evaluate
from tagnet.models import create_model
from tagnet.modalities.text import cached_embeddings
from tagnet.training.trainer import train

DATA = Path(os.environ.get("GOEMOTIONS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions")
READ = {"no_header": True, "id_column": "2", "label_names_file": DATA / "labels.txt"}
# Chosen on the 10% validation part of train.tsv (dev.tsv not used to choose): a linear head (lr 2e-3 / 1e-2)
# reached validation macro-F1 0.25 / 0.35, hidden 512: 0.40-0.42, hidden 1024 lr 3e-3: 0.43, hidden 2048: 0.42.
HEAD = dict(epochs=30, patience=5, batch_size=256, lr=3e-3, weight_decay=1e-2, dropout=0.5, head_hidden=1024,
            val_fraction=0.1)


def _peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _scored(run_dir: Path, seconds: float, **info) -> dict:
    report, _ = evaluate(run_dir, DATA / "dev.tsv")
    return {**info, "dev_macro_f1": round(report.macro_f1, 4), "dev_micro_f1": round(report.micro_f1, 4),
            "dev_mAP": round(report.mAP, 4), "dev_hamming_loss": round(report.hamming_loss, 4),
            "dev_label_ece": _mean_label_ece(report), "train_seconds": round(seconds, 1), "peak_rss_mb": _peak_mb()}


def _mean_label_ece(report) -> float | None:
    """The report's per-label calibration errors (15 bins), averaged over the labels that have one."""
    values = [row["ece"] for row in report.per_label if row.get("ece") is not None]
    return round(sum(values) / len(values), 4) if values else None


def default_command(out: Path, *, variant: str, budget: str | None, extra: list[str] = ()) -> dict:
    """`tagnet train` with no recipe settings, in a child process: dev macro/micro-F1 and mAP, wall time, peak RSS."""
    run_dir = out / f"default-{variant}"
    command = [sys.executable, "-m", "tagnet.cli", "train", str(DATA / "train.tsv"), "--text-column", "0", "--no-header",
               "--id-column", "2", "--label-names", str(DATA / "labels.txt"), "--out", str(run_dir), "--force"]
    command += ["--val", str(DATA / "dev.tsv")] if variant == "dev" else ["--set", "val_fraction=0.1"]
    command += (["--time-budget", budget] if budget else []) + list(extra)
    load = os.getloadavg()
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    meta = json.loads((run_dir / "artifact" / "tagnet.json").read_text())
    row = _scored(run_dir, seconds, step=f"default `tagnet train` ({'dev as validation' if variant == 'dev' else '10% of train held out'})",
                  recipe=meta["extra"].get("recipe"), max_tokens=meta["input"]["max_tokens"],
                  load_before=[round(x, 2) for x in load], load_after=[round(x, 2) for x in os.getloadavg()],
                  command=" ".join(command[2:]))
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return row


STUDY_RUNS = {  # name: settings of `tagnet train` (with --val A); all read the same embedding cache
    "head15-auto": dict(finetune=False),
    "head5-auto": dict(finetune=False, epochs=5),
    "head30-auto": dict(finetune=False, epochs=30, patience=30),
    "head15-bce": dict(finetune=False, loss="bce"),
    "head15-weighted_bce": dict(finetune=False, loss="weighted_bce"),
    "head15-asl": dict(finetune=False, loss="asl"),
    "finetune1-auto": dict(finetune=True, finetune_epochs=1),
    "finetune2-auto": dict(finetune=True, finetune_epochs=2),
}


def _study_files(out: Path, n_train: int = 5_000) -> tuple[Path, Path, Path]:
    """The first n_train lines of train.tsv, and dev.tsv's lines parted at random (seed 0) into halves A and B."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    lines = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    train = out / f"train-first{n_train}.tsv"
    train.write_text("".join(lines[:n_train]), encoding="utf-8")
    dev = (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    order = np.random.default_rng(0).permutation(len(dev))
    halves = []
    for name, part in (("A", order[: len(dev) // 2]), ("B", order[len(dev) // 2:])):
        halves.append(out / f"dev-{name}.tsv")
        halves[-1].write_text("".join(dev[i] for i in np.sort(part)), encoding="utf-8")
    return train, halves[0], halves[1]


def _rules_on_b(run_dir: Path, dev_b: Path, objective: str = "f1") -> dict:
    """Macro/micro-F1 on B at the run's thresholds (fitted on A's threshold rows), at per-label F1 thresholds fitted on
    all of A (val_predictions.csv: the old rule), and at p >= 0.5; B's mAP."""
    import numpy as np

    from tagnet.decisions.thresholds import fit_decisions
    from tagnet.evaluation.evaluate import labelled_probabilities
    from tagnet.evaluation.metrics import evaluate_probabilities
    from tagnet.inference.predictor import Predictor
    from tagnet.training.run_folder import read_validation_predictions

    predictor = Predictor(run_dir)
    targets, known, probs, _ = labelled_probabilities(predictor, dev_b)
    names, _, truths, val_probs = read_validation_predictions(run_dir / "val_predictions.csv")
    old = fit_decisions((truths > 0).astype(np.float32), val_probs, objective=objective, known=truths >= 0).thresholds
    rules = {"fitted_apart": predictor.artifact.thresholds, "fitted_on_all_of_A": old,
             "p>=0.5": np.full(len(names), 0.5)}
    row = {}
    for name, rule in rules.items():
        report = evaluate_probabilities(targets, probs, rule, label_names=names, known=known)
        row[f"B_macro_f1[{name}]"], row[f"B_micro_f1[{name}]"] = round(report.macro_f1, 4), round(report.micro_f1, 4)
        row["B_mAP"] = round(report.mAP, 4)
    row["B_macro_f1_by_threshold_share"] = _share_curve(truths, val_probs, targets, probs, known, names, objective)
    return row


def _share_curve(truths, val_probs, targets, probs, known, names, objective) -> dict:
    """B's macro-F1 (mean, std over 5 draws, rows) at thresholds fitted on a stratified share of A's rows."""
    import numpy as np

    from tagnet.decisions.thresholds import fit_decisions
    from tagnet.evaluation.metrics import evaluate_probabilities
    from tagnet.training.validation import threshold_slice

    y, k = (truths > 0).astype(np.float32), truths >= 0
    rows, curve = np.arange(len(y)), {}
    for share in (0.3, 0.5, 0.7, 0.8, 0.9, 1.0):
        scores = []
        for seed in range(1 if share == 1.0 else 5):
            kept = rows if share == 1.0 else threshold_slice(y, k, [(rows[:0], rows)], share=share, seed=seed)[1]
            fitted = fit_decisions(y[kept], val_probs[kept], objective=objective, known=k[kept]).thresholds
            scores.append(evaluate_probabilities(targets, probs, fitted, label_names=names, known=known).macro_f1)
        curve[share] = [round(float(np.mean(scores)), 4), round(float(np.std(scores)), 4), int(len(kept))]
    return curve


def study(out: Path, names: list[str]) -> list[dict]:
    """The --study runs `names` (STUDY_RUNS), each: seconds, load, the recipe's choices and B's scores."""
    train_file, dev_a, dev_b = _study_files(out)
    quiet, rows = Console(quiet=True), []
    for name in names:
        config = TrainConfig(cache_dir=str(out / "cache"), **STUDY_RUNS[name])
        load, started = os.getloadavg(), time.perf_counter()
        result = train(train_file, modality="text", text_column="0", val_labels=dev_a, out_dir=out / name,
                       config=config, read_options=READ, progress=False, console=quiet, force=True)
        seconds = time.perf_counter() - started
        metrics = json.loads((result.run_dir / "metrics.json").read_text())
        extra = json.loads((result.artifact_dir / "tagnet.json").read_text())["extra"]
        rows.append({"run": name, "seconds": round(seconds, 1), "load": [round(x, 1) for x in load + os.getloadavg()],
                     "finetuned": extra["finetuned"], "loss_choice": metrics.get("loss_choice"),
                     "estimates": {k: {m: round(v[m], 4) for m in ("macro_f1", "micro_f1")}
                                   for k, v in metrics.get("estimates", {}).items()},
                     **_rules_on_b(result.run_dir, dev_b)})
        print(json.dumps(rows[-1]), flush=True)
        with (out / "study.jsonl").open("a") as handle:
            handle.write(json.dumps(rows[-1]) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/out/goemotions")
    parser.add_argument("--finetune", type=int, nargs="?", const=0, default=None, metavar="N",
                        help="also fine-tune the encoder after the head: on the first N training texts, or all without N")
    parser.add_argument("--ensemble", type=int, default=None, metavar="K", help="also train K frozen-encoder heads, averaged")
    parser.add_argument("--default", nargs="?", const="dev", choices=("dev", "holdout"), default=None,
                        help="only the default command: --val dev.tsv (dev) or 10%% of train held out (holdout)")
    parser.add_argument("--time-budget", default=None, help="with --default: tagnet train --time-budget")
    parser.add_argument("--train-args", default="", help="with --default: more tagnet train options, e.g. "
                                                           "'--set finetune_lr=1e-4'")
    parser.add_argument("--study", action="store_true", help="where a run's minutes pay, on 5,000 texts (see above)")
    parser.add_argument("--study-runs", default=",".join(STUDY_RUNS), help="with --study: which runs, comma-separated")
    args = parser.parse_args()
    out = Path(args.out)
    if args.study:
        study(out / "study", args.study_runs.split(","))
        return
    if args.default:
        out.mkdir(parents=True, exist_ok=True)
        row = default_command(out, variant=args.default, budget=args.time_budget, extra=args.train_args.split())
        print(json.dumps(row), flush=True)
        (out / f"results-default-{args.default}.json").write_text(json.dumps(row, indent=2) + "\n")
        return
    cache = out / "cache"
    quiet = Console(quiet=True)
    results = []

    encoder = create_model("minilm_l6", num_labels=28).backbone
    for split in ("train", "dev"):
        _, texts = read_labels_with_texts(DATA / f"{split}.tsv", "0", **READ)
        started = time.perf_counter()
        cached_embeddings(encoder, texts, cache_dir=cache)  # a second run reads them from the cache in a second
        results.append({"step": f"embed {split}", "texts": len(texts), "seconds": round(time.perf_counter() - started, 1),
                        "peak_rss_mb": _peak_mb()})
        print(json.dumps(results[-1]), flush=True)

    config = TrainConfig(cache_dir=str(cache), **HEAD)
    started = time.perf_counter()
    result = train(DATA / "train.tsv", modality="text", text_column="0", out_dir=out / "frozen",
                           config=config, read_options=READ, progress=False, console=quiet)
    results.append(_scored(result.run_dir, time.perf_counter() - started, step="frozen MiniLM + MLP head", **HEAD))
    print(json.dumps(results[-1]), flush=True)

    if args.ensemble:
        started = time.perf_counter()
        result = train(DATA / "train.tsv", modality="text", text_column="0", out_dir=out / f"frozen-ensemble{args.ensemble}",
                               config=config.updated(ensemble=args.ensemble), read_options=READ, progress=False, console=quiet)
        results.append(_scored(result.run_dir, time.perf_counter() - started,
                               step=f"frozen MiniLM + {args.ensemble} MLP heads averaged", ensemble=args.ensemble, **HEAD))
        print(json.dumps(results[-1]), flush=True)

    if args.finetune is not None:
        source, label = DATA / "train.tsv", "all training texts"
        if args.finetune:  # the first N texts only, with the frozen encoder on the same texts for comparison
            source, label = out / f"train-first{args.finetune}.tsv", f"first {args.finetune} texts"
            lines = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
            source.write_text("".join(lines[:args.finetune]), encoding="utf-8")
        for finetune in ((False, True) if args.finetune else (True,)):
            tuned = config.updated(finetune=finetune, finetune_epochs=2, batch_size=32)
            started = time.perf_counter()
            run = train(source, modality="text", text_column="0", out_dir=out / f"{source.stem}-finetune{int(finetune)}",
                                config=tuned, read_options=READ, progress=False, console=quiet)
            extra = json.loads((run.artifact_dir / "tagnet.json").read_text())["extra"]
            results.append(_scored(run.run_dir, time.perf_counter() - started, finetune_kept=extra["finetuned"],
                                   step=f"{label}, {'fine-tuned (2 epochs, lr 5e-5, batch 32)' if finetune else 'frozen'}"))
            print(json.dumps(results[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
