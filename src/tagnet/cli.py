"""The `tagnet` command line: parses arguments, calls the library, prints results."""

import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

import tagnet
from tagnet.data.check import check_dataset, render_report
from tagnet.data.labels import read_labels
from tagnet.data.split import render_split, split_table, write_split
from tagnet.config import TrainConfig, describe_settings, load_config, parse_overrides
from tagnet.errors import ConfigError, TagnetError

app = typer.Typer(name="tagnet", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Multi-label classification: label files in, trained model, metrics and predictions out.")
data_app = typer.Typer(no_args_is_help=True, help="Check label files and images; split them for training.")
app.add_typer(data_app, name="data", help="Check label files and images; split them for training.")

# ---- options shared by every command that reads a label file (data check/split, train, evaluate) ----
LabelsArg = Annotated[Path, typer.Argument(
    help="label file (CSV/TSV, JSON Lines, JSON, COCO) or folder (Pascal VOC XML, one folder per label)")]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", help="tags, onehot, jsonl, json, coco, voc or folders; detected when omitted")]
IdColumnOpt = Annotated[Optional[str], typer.Option(
    "--id-column", help="column or JSON key of the item ids (a number from 0 with --no-header)")]
LabelsColumnOpt = Annotated[Optional[str], typer.Option(
    "--labels-column", help="column or JSON key of the tags")]
SeparatorOpt = Annotated[Optional[str], typer.Option(
    "--separator", help="between tags in one cell: a character or space, comma, semicolon, pipe, tab")]
LabelColumnsOpt = Annotated[Optional[str], typer.Option(
    "--label-columns", help="comma-separated 0/1 columns of a one-hot CSV (default: all but the id)")]
LabelNamesOpt = Annotated[Optional[Path], typer.Option(
    "--label-names", help="text file with one label name per line (maps index tags to names)")]
IndicesOpt = Annotated[bool, typer.Option(
    "--labels-are-indices", help="tags are 0-based lines of --label-names (default: detected)")]
NoHeaderOpt = Annotated[bool, typer.Option("--no-header", help="the CSV/TSV file has no header row")]
DelimiterOpt = Annotated[Optional[str], typer.Option(
    "--delimiter", help="CSV field delimiter (default: tab for .tsv, else sniffed)")]


TabularOpt = Annotated[bool, typer.Option(
    "--tabular", help="LABELS is a feature table (CSV): every column but the labels and id is a numeric input")]
LabelCountOpt = Annotated[Optional[int], typer.Option(
    "--label-count", min=1, help="feature tables: the labels are the last L columns")]
LabelsXmlOpt = Annotated[Optional[Path], typer.Option(
    "--labels-xml", help="ARFF: MULAN XML naming the labels (default: NAME.xml found beside)")]
RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", help="auto (ONNX Runtime when the artifact has a model.onnx from `tagnet export`), torch or onnx")]


def read_options(*, format: str | None = None, id_column: str | None = None, labels_column: str | None = None,
                 separator: str | None = None, label_columns: str | None = None,
                 label_names: Path | None = None, labels_are_indices: bool = False,
                 no_header: bool = False, delimiter: str | None = None) -> dict[str, Any]:
    """read_labels keyword arguments from the shared label-file options above."""
    return {"format": format, "id_column": id_column, "labels_column": labels_column, "separator": separator,
            "label_columns": [c.strip() for c in label_columns.split(",")] if label_columns else None,
            "label_names_file": label_names, "labels_are_indices": labels_are_indices or None,
            "no_header": no_header, "delimiter": delimiter}


_LABEL_FILE_OPTIONS = {  # name: (annotation, default), in the order --help lists them
    "format": (FormatOpt, None), "id_column": (IdColumnOpt, None), "labels_column": (LabelsColumnOpt, None),
    "separator": (SeparatorOpt, None), "label_columns": (LabelColumnsOpt, None), "label_names": (LabelNamesOpt, None),
    "labels_are_indices": (IndicesOpt, False), "no_header": (NoHeaderOpt, False), "delimiter": (DelimiterOpt, None),
}
LabelFileOptions = Optional[dict]  # the `options` parameter that label_file_options fills in


def label_file_options(*, skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Give a command every shared label-file option; it receives them as `options`, ready for read_labels."""
    names = [name for name in _LABEL_FILE_OPTIONS if name not in skip]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        params = [p for p in signature.parameters.values() if p.name != "options"]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=_LABEL_FILE_OPTIONS[name][0],
                                     default=_LABEL_FILE_OPTIONS[name][1]) for name in names]

        @functools.wraps(command)
        def with_options(*args: Any, **kwargs: Any) -> Any:
            return command(*args, options=read_options(**{name: kwargs.pop(name) for name in names}), **kwargs)

        with_options.__signature__ = signature.replace(parameters=params)
        return with_options

    return decorate


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tagnet {tagnet.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Multi-label classification: label files in, trained model, metrics and predictions out."""


@data_app.command("check")
@label_file_options()
def data_check(
    labels: LabelsArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the item ids are relative to")] = None,
    min_examples: Annotated[int, typer.Option("--min-examples", min=0,
                                              help="warn about labels with fewer examples")] = 5,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the report as JSON here")] = None,
    tabular: TabularOpt = False,
    label_count: LabelCountOpt = None,
    labels_xml: LabelsXmlOpt = None,
    options: LabelFileOptions = None,
) -> None:
    """Check a label file and its images, or a feature table (ARFF, CSV) and its columns; list every problem
    with its row or file (exit 1 if unusable)."""
    modality, options = _modality_and_options(labels, options, text_column=None, tabular=tabular,
                                              label_count=label_count, labels_xml=labels_xml)
    report = check_dataset(labels, images_dir=images, min_examples=min_examples, tabular=modality == "tabular", **options)
    render_report(report, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    raise typer.Exit(0 if report.usable else 1)


@data_app.command("split")
@label_file_options()
def data_split(
    labels: LabelsArg,
    out: Annotated[Path, typer.Option("--out", help="folder for the train, val and test files")],
    val: Annotated[float, typer.Option("--val", help="share of items for validation")] = 0.2,
    test: Annotated[float, typer.Option("--test", help="share of items for a test part (0 = none)")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="random seed; the same seed gives the same split")] = 0,
    options: LabelFileOptions = None,
) -> None:
    """Split a label file into train, val (and test) files that keep each label's share."""
    from tagnet.data.tabular import is_feature_table

    if is_feature_table(labels):
        raise ConfigError(f"{labels} is a feature table; tagnet data split writes label files. `tagnet train` holds out "
                          "a stratified val_fraction of a feature table itself (--set val_fraction=0.2), or takes --val FILE")
    parts = split_table(read_labels(labels, **options), val=val, test=test, seed=seed)
    render_split(parts, Console(), paths=write_split(parts, out, source=labels))


# ---- training, evaluation, prediction ----
def _modality_and_options(labels: Path, options: dict, *, text_column: str | None, tabular: bool,
                          label_count: int | None, labels_xml: Path | None) -> tuple[str, dict]:
    """What LABELS holds ("text" with --text-column; "tabular" for ARFF, --tabular, --label-count or --labels-xml;
    else "image") and the read options for it."""
    from tagnet.data.tabular import is_feature_table

    table_only = {"label_count": label_count, "labels_xml": labels_xml}
    if text_column:
        return "text", options
    if tabular or is_feature_table(labels, table_only):
        return "tabular", {**options, **table_only}
    return "image", options


def _settings_from(config_file: Path | None, overrides: list[str] | None, **flags: Any) -> TrainConfig:
    """TrainConfig from defaults < --config FILE < --set KEY=VALUE < explicit flags."""
    config = load_config(config_file) if config_file else TrainConfig()
    values = parse_overrides(overrides or [])
    values.update({k: v for k, v in flags.items() if v is not None})
    return config.updated(**values)


@app.command("train")
@label_file_options()
def train_command(
    labels: Annotated[Optional[Path], typer.Argument(
        help="label file of the training data (CSV/TSV, JSON Lines, JSON, COCO, VOC folder, folder per label, ARFF)",
        show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="continue the interrupted run in this folder")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the image paths in LABELS are relative to")] = None,
    val: Annotated[Optional[Path], typer.Option("--val", help="validation label file; default: a stratified split of LABELS")] = None,
    out: Annotated[Path, typer.Option("--out", help="run folder to write")] = Path("runs/train"),
    config_file: Annotated[Optional[Path], typer.Option("--config", help="JSON settings file (e.g. from tagnet tune)")] = None,
    backbone: Annotated[Optional[str], typer.Option("--backbone", help="seed_cnn, efficientnet_lite0 (default) or any timm model")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="local pretrained weights file for the backbone")] = None,
    pretrained: Annotated[Optional[bool], typer.Option("--pretrained/--no-pretrained", help="start from pretrained weights")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="maximum epochs")] = None,
    finetune: Annotated[Optional[bool], typer.Option("--finetune/--no-finetune", help="after the head, fine-tune the whole network")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="peak learning rate")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay")] = None,
    dropout: Annotated[Optional[float], typer.Option("--dropout")] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="bce, weighted_bce, focal or asl")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option("--label-smoothing")] = None,
    mixup: Annotated[Optional[float], typer.Option("--mixup", help="mixup alpha, 0 = off")] = None,
    augment: Annotated[Optional[str], typer.Option("--augment", help="none, basic, randaugment or trivialaugment")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="input size in pixels")] = None,
    patience: Annotated[Optional[int], typer.Option("--patience", help="early stopping patience in epochs")] = None,
    ensemble: Annotated[Optional[int], typer.Option("--ensemble", min=1, help="tabular and text models: average the probabilities of this many heads trained one after another")] = None,
    threshold_mode: Annotated[Optional[str], typer.Option("--threshold-mode", help="per-label, global, top-k or fixed (see tagnet settings)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    devices: Annotated[Optional[str], typer.Option("--devices", help="Lightning devices: a count or auto")] = None,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="Lightning strategy, e.g. ddp")] = None,
    num_nodes: Annotated[Optional[int], typer.Option("--num-nodes", help="machines in distributed training")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="Lightning precision, e.g. 32-true, bf16-mixed")] = None,
    text_column: Annotated[Optional[str], typer.Option("--text-column", help="train on the text in this column instead of images")] = None,
    tabular: TabularOpt = False,
    label_count: LabelCountOpt = None,
    labels_xml: LabelsXmlOpt = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="any setting as KEY=VALUE (see tagnet settings)")] = None,
    options: LabelFileOptions = None,
) -> None:
    """Train a model on LABELS and write a run folder (artifact, metrics per epoch, config)."""
    from tagnet.metrics import render_metrics
    from tagnet.engine.fit import is_main_process
    from tagnet.train import resume_training, train

    console = Console()
    if resume is not None:
        result = resume_training(resume, console=console)
        render_metrics(result.report, console)
        console.print(f"run resumed and finished in {result.run_dir} (artifact: {result.artifact_dir})")
        return
    if labels is None:
        raise TagnetError("tagnet train needs a LABELS file (or --resume RUN)")
    config = _settings_from(config_file, overrides, backbone=backbone, weights=weights, pretrained=pretrained,
                            epochs=epochs, finetune=finetune, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                            dropout=dropout, loss=loss, label_smoothing=label_smoothing, mixup=mixup, augment=augment,
                            image_size=image_size, patience=patience, threshold_mode=threshold_mode, seed=seed, ensemble=ensemble,
                            devices=devices, strategy=strategy, num_nodes=num_nodes, precision=precision)
    modality, options = _modality_and_options(labels, options, text_column=text_column, tabular=tabular,
                                              label_count=label_count, labels_xml=labels_xml)
    if modality == "image":
        result = train(labels, images_dir=images, val_labels=val, out_dir=out, config=config, read_options=options,
                       console=console)
    else:
        from tagnet.train_vectors import train_vectors

        result = train_vectors(labels, modality=modality, text_column=text_column, val_labels=val, out_dir=out,
                               config=config, read_options=options, console=console, progress=True)
    if is_main_process():  # one report per distributed run
        render_metrics(result.report, console)
        console.print(f"run written to {result.run_dir} (artifact: {result.artifact_dir}) in {result.seconds:.0f} s")


@app.command("evaluate")
@label_file_options()
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    labels: LabelsArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the image paths in LABELS are relative to")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the full report as JSON here")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", min=0.0, max=1.0, help="predict p >= T for every label instead of the model's fitted thresholds")] = None,
    options: LabelFileOptions = None,
) -> None:
    """Score a trained model on labelled data: mAP, per-label AP/P/R/F1, micro/macro/samples F1, Hamming loss..."""
    from tagnet.evaluate import evaluate
    from tagnet.metrics import render_metrics

    report, skipped = evaluate(run, labels, images_dir=images, read_options=options, threshold=threshold)
    console = Console()
    for path, reason in skipped.items():
        console.print(f"[yellow]skipped[/yellow] {reason}")
    render_metrics(report, console)
    if json_out is not None:
        json_out.write_text(json.dumps({**report.to_dict(), "skipped": skipped}, indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {json_out}")


@app.command("predict")
def predict_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="image files, folders or glob patterns; for a tabular model ARFF/CSV tables; for a text model text files")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="write every probability to FILE.csv or FILE.json")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    text: Annotated[Optional[list[str]], typer.Option("--text", help="text model: a text to label (repeatable)")] = None,
    text_file: Annotated[Optional[Path], typer.Option("--text-file", help="text model: a UTF-8 file, one text per line")] = None,
    runtime: RuntimeOpt = "auto",
) -> None:
    """Predict labels of new images (or texts, or feature rows); unreadable files are reported and skipped."""
    from tagnet.data.images import find_images
    from tagnet.predict import Predictor, load_predictor, render_predictions

    predictor = load_predictor(artifact, batch_size=batch_size, runtime=runtime)
    if text or text_file:
        results = predictor.predict_texts(text) if text else predictor.predict_paths([text_file])
    elif isinstance(predictor, Predictor):
        results = predictor.predict_paths(find_images(inputs or []))
    else:
        results = predictor.predict_paths(inputs or [])
    render_predictions(results, Console())
    if output is not None:
        Console().print(f"predictions written to {results.write(output)}")
    if not results.predictions:
        raise typer.Exit(1)


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="folder for the demo's data, run and predictions")] = Path("tagnet-demo"),
) -> None:
    """Generate synthetic shapes, train, evaluate and predict: the whole pipeline offline in a few minutes."""
    from tagnet.demo import run_demo

    run_demo(out)


@app.command("settings")
def settings_command() -> None:
    """List every training setting with its type, default and meaning."""
    table = Table("setting", "type", "default", "meaning")
    for row in describe_settings():
        table.add_row(*row)
    Console().print(table)



@app.command("export")
@label_file_options(skip=("format",))  # --format is the export format here
def export_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    format: Annotated[str, typer.Option("--format", help="export format (only onnx)")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="the .onnx file; default ARTIFACT/model.onnx, which predict and serve then use")] = None,
    quantize: Annotated[bool, typer.Option("--quantize", help="also write model.int8.onnx (int8 dynamic)")] = False,
    val: Annotated[Optional[Path], typer.Option("--val", help="validation label file: report the mAP of the "
                                                               "ONNX model(s) on it")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the image paths in --val are relative to")] = None,
    opset: Annotated[int, typer.Option("--opset", min=17, help="ONNX opset version")] = 18,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the export report as JSON here")] = None,
    options: LabelFileOptions = None,
) -> None:
    """Export a model to ONNX (probabilities out; labels, thresholds, preprocessing inside), checked against PyTorch."""
    from tagnet.export import export_onnx, render_export

    report = export_onnx(artifact, out=out, format=format, opset=opset, quantize=quantize, val_labels=val,
                         images_dir=images, read_options=options)
    render_export(report, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


@app.command("serve")
def serve_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    host: Annotated[str, typer.Option("--host", help="address to listen on (0.0.0.0 for every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    runtime: RuntimeOpt = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="most images per model call")] = 32,
    batch_window_ms: Annotated[float, typer.Option(
        "--batch-window-ms", min=0, help="how long to wait for more requests to batch with the first")] = 5.0,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="largest request body")] = 20.0,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /labels, /health, /metrics, a web page at /, API docs at /docs."""
    from tagnet.serve import run_server

    run_server(artifact, host=host, port=port, runtime=runtime, batch_size=batch_size,
               batch_window_ms=batch_window_ms, max_upload_bytes=int(max_upload_mb * 1024 * 1024))


@app.command("tune")
@label_file_options()
def tune_command(
    labels: LabelsArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the image paths in LABELS are relative to")] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="trials the study should hold in all; a rerun continues it")] = 20,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="start no new trial after this many seconds")] = None,
    out: Annotated[Path, typer.Option("--out", help="study folder: study.db, best_config.json, best_run/")] = Path("runs/tune"),
    val: Annotated[Optional[Path], typer.Option("--val", help="validation label file; default: LABELS split once")] = None,
    backbones: Annotated[Optional[str], typer.Option(
        "--backbones", help="comma-separated backbones the search chooses from (default efficientnet_lite0; "
                            "mlp / minilm_l6 for tables / text)")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="JSON settings the search leaves fixed")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="a fixed setting as KEY=VALUE (see tagnet settings)")] = None,
    metric: Annotated[str, typer.Option("--metric", help="what to optimise on validation: mAP, micro_f1, macro_f1 or "
                                                          "hamming_loss (at the fitted thresholds; with --set "
                                                          "threshold_mode=fixed at p >= 0.5)")] = "mAP",
    text_column: Annotated[Optional[str], typer.Option("--text-column", help="search for a text model on this column")] = None,
    tabular: TabularOpt = False,
    label_count: LabelCountOpt = None,
    labels_xml: LabelsXmlOpt = None,
    options: LabelFileOptions = None,
) -> None:
    """Search learning rate, weight decay, dropout, head width, loss and augmentation (images) or label smoothing
    and mixup (text, tables) with Optuna for the best validation mAP (or --metric)."""
    from tagnet.tune import tune

    console = Console()
    modality, options = _modality_and_options(labels, options, text_column=text_column, tabular=tabular,
                                              label_count=label_count, labels_xml=labels_xml)
    result = tune(labels, images_dir=images, val_labels=val, out_dir=out, trials=trials, timeout=timeout,
                  base_config=_settings_from(config_file, overrides),
                  backbones=backbones.split(",") if backbones else None, read_options=options, console=console,
                  modality=modality, text_column=text_column, metric=metric)
    console.print(f"best validation {result.metric} {result.best_value:.4f} of {result.finished} trials ({result.pruned} pruned); "
                  f"its run: {result.best_run}")
    where = "".join(f" {flag} {value}" for flag, value in (
        ("--images", images), ("--val", val), ("--text-column", text_column), ("--label-count", label_count),
        ("--labels-xml", labels_xml)) if value) + (" --tabular" if tabular else "")
    console.print(f"settings written to {result.best_config_path}; train with them: "
                  f"tagnet train {labels}{where} --config {result.best_config_path}")


@app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="run folder written by tagnet train (or a tune study's best_run)")],
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file to write; default RUN/report.html")] = None,
    worst: Annotated[int, typer.Option("--worst", min=0, help="highest-loss validation items to show")] = 12,
) -> None:
    """Write one self-contained HTML page: training curves, PR curves, F1 and thresholds, co-occurrence, worst items."""
    from tagnet.report import write_report

    Console().print(f"report written to {write_report(run, out=out, max_images=worst)}")


@app.command("explain")
def explain_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder of an image model")],
    inputs: Annotated[list[str], typer.Argument(help="image files, folders or glob patterns")],
    labels: Annotated[Optional[str], typer.Option(
        "--labels", help="comma-separated labels to explain (default: each image's predicted labels)")] = None,
    out: Annotated[Path, typer.Option("--out", help="folder for the heatmap PNGs")] = Path("explanations"),
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
) -> None:
    """Grad-CAM heatmap of each label's logit over each image: one PNG per image and label."""
    from tagnet.data.images import find_images
    from tagnet.explain import explain_paths
    from tagnet.predict import Predictor

    wanted = [name.strip() for name in labels.split(",") if name.strip()] if labels else None
    done = explain_paths(Predictor(artifact, batch_size=batch_size), find_images(inputs), out_dir=out, labels=wanted)
    console = Console()
    for reason in done.skipped.values():
        console.print(f"[yellow]skipped[/yellow] {reason}")
    for source in done.without_labels:
        console.print(f"{source}: no label predicted (pass --labels to explain chosen labels)")
    console.print(f"{len(done.written)} heatmaps written to {out}")
    if not done.written:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point: a user error prints `error: <message>` on stderr and exits 2."""
    try:
        app()
    except TagnetError as e:
        _fail(str(e))
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        _fail(f"{e.strerror}: {e.filename}" if e.filename else str(e))


def _fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
