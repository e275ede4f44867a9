"""The demo: synthetic shapes -> train -> evaluate on unseen images -> predict a few, all offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tagnet.config.settings import TrainConfig
from tagnet.data.synthetic import write_synthetic_dataset
from tagnet.evaluation.evaluate import evaluate
from tagnet.evaluation.metrics import MetricsReport
from tagnet.inference.predictor import PredictionResults, Predictor
from tagnet.report.terminal import render_metrics
from tagnet.training.trainer import TrainResult, train


@dataclass
class DemoResult:
    """What the demo wrote and measured."""

    out_dir: Path
    train: TrainResult
    test_report: MetricsReport
    predictions: PredictionResults
    predictions_file: Path


DEMO_BUDGET = "1m"  # training's share of the demo: what fits in it on the machine at hand is chosen and said


def run_demo(out_dir: str | Path = "tagnet-demo", *, n_train: int = 600, n_test: int = 200,
             config: TrainConfig | None = None, time_budget: str | None = DEMO_BUDGET, console: Console | None = None, progress: bool = True) -> DemoResult:
    """Generate the synthetic shapes data, train the default recipe, evaluate on unseen images, predict a few.

    Args:
        out_dir: where the data, run folder and predictions go.
        n_train, n_test: number of generated training (incl. validation) and test images.
        config: training settings; default TrainConfig (the pretrained default backbone, cached features).
        time_budget: the training's --time-budget (the recipe that fits is chosen and said); None: no limit.
    """
    console = console or Console()
    config = (config or TrainConfig()).updated(time_budget=time_budget)  # bad settings fail before any data is made
    out = Path(out_dir)
    console.rule("1. data: synthetic shapes, 0-3 per image")
    train_data = write_synthetic_dataset(out / "data" / "train", n=n_train, seed=0)
    test_data = write_synthetic_dataset(out / "data" / "test", n=n_test, seed=1)
    console.print(f"{n_train} training and {n_test} test images, labels {train_data.table.label_names}")
    console.rule("2. train")
    result = train(train_data.labels_csv, images_dir=train_data.images_dir, out_dir=out / "run",
                   config=config, console=console, progress=progress, force=True)  # a rerun redoes it
    console.print(f"validation mAP {result.report.mAP:.3f}, micro-F1 {result.report.micro_f1:.3f} "
                  f"(thresholds tuned per label on validation data)")
    console.rule("3. evaluate on unseen test images")
    predictor = Predictor(result.artifact_dir)
    report, _ = evaluate(predictor, test_data.labels_csv, images_dir=test_data.images_dir)
    render_metrics(report, console)
    console.rule("4. predict new images")
    sample = sorted(test_data.images_dir.iterdir())[:5]
    predictions = predictor.predict_paths(sample)
    truth = dict(zip(test_data.table.items, test_data.table.label_sets()))
    for p in predictions:
        name = Path(p.source).name
        console.print(f"{name}: predicted {p.labels or '[]'}  true {truth.get(name, '?')}")
    predictions_file = predictions.write(out / "predictions.csv")
    console.rule("written")
    console.print(f"model artifact   {result.artifact_dir}\nper-epoch metrics {result.run_dir / 'metrics.csv'}\n"
                  f"validation report {result.run_dir / 'metrics.json'}\npredictions      {predictions_file}\n"
                  f"next: tagnet predict {result.run_dir} YOUR_IMAGES... ; tagnet serve {result.run_dir}")
    return DemoResult(out, result, report, predictions, predictions_file)
