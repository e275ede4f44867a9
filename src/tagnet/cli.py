"""The `tagnet` command line: parses arguments, calls the library, prints results."""

import dataclasses
import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core
from rich.console import Console
from rich.table import Table

import tagnet
from tagnet.config.constraints import AnyOf, Interval
from tagnet.config.settings import (TRAIN_RULES, MAX_BATCH_SIZE, MODALITY_DEFAULTS, CalibrateSettings, ExportSettings, PredictSettings,
                           ServeSettings, TrainConfig, TuneSettings, describe_settings, load_config, parse_overrides,
                           setting_types, validate_settings)
from tagnet.data.check import check_dataset
from tagnet.data.formats import describe as describe_formats
from tagnet.data.labels import read_labels
from tagnet.data.split import split_table, write_split
from tagnet.errors import ConfigError, TagnetError

class _NoBoolHelp:
    """A command or group whose --help option shows no `<bool>` type."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Command(_NoBoolHelp, typer.core.TyperCommand):
    pass


class _Group(_NoBoolHelp, typer.core.TyperGroup):
    pass


app = typer.Typer(name="tagnet", cls=_Group, add_completion=False, pretty_exceptions_enable=False,
                  help="Multi-label classification: label files in, trained model, metrics and predictions out.")
data_app = typer.Typer(cls=_Group, help="Check label files and images; split them for training.")
FLAG = ""  # the metavar of on/off options: --help shows no `<bool>` after them
app.add_typer(data_app, name="data", help="Check label files and images; split them for training.")

# ---- options shared by every command that reads a label file (data check/split, train, evaluate) ----
LABEL_FILES = ("label file or folder of any format in --format (tags or one-hot CSV/TSV, JSON Lines, JSON, COCO, CVAT, "
               "Label Studio, spaCy, Prodigy, Ground Truth, Labelbox, Darwin, YOLO, Pascal VOC, one folder per label, ...)")
LabelsArg = Annotated[Path, typer.Argument(help=LABEL_FILES + ", or an ARFF/CSV feature table", show_default=False)]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", help=f"label file format, detected when omitted (ARFF by its suffix): {describe_formats()}")]
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
    "--labels-are-indices", metavar=FLAG, help="tags are 0-based lines of --label-names (default: detected)")]
NoHeaderOpt = Annotated[bool, typer.Option("--no-header", metavar=FLAG, help="the CSV/TSV file has no header row")]
DelimiterOpt = Annotated[Optional[str], typer.Option(
    "--delimiter", help="CSV field delimiter (default: tab for .tsv, else sniffed)")]


TabularOpt = Annotated[bool, typer.Option(
    "--tabular", metavar=FLAG,
    help="LABELS is a feature table (CSV): every column but the labels and id is a numeric input")]
LabelCountOpt = Annotated[Optional[int], typer.Option(
    "--label-count", min=1, help="feature tables: the labels are the last L columns")]
LabelsXmlOpt = Annotated[Optional[Path], typer.Option(
    "--labels-xml", help="ARFF: MULAN XML naming the labels (default: NAME.xml found beside)")]


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


def _default_text(name: str, default: Any) -> str:
    """How --help states a setting's default: its value, or each modality's where it depends on the modality."""
    if default == "":
        return "default none"
    if default is None and name in MODALITY_DEFAULTS["image"]:
        per = [f"{value} ({modality})" for modality, values in MODALITY_DEFAULTS.items()
               for key, value in values.items() if key == name]
        return "default " + ", ".join(per)
    return "" if default is None else f"default {default}"


def _setting_option(cls: type, f: dataclasses.Field, *, layered: bool) -> inspect.Parameter:
    """The typer option of one declared setting: its flag, meaning, default and constraint from config/.

    `layered` options default to None, so that only the flags given override --config and --set.
    """
    kind = setting_types(cls)[f.name]
    flag = f.metadata["flag"]
    names = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    extra: dict[str, Any] = {}  # bounds are checked by validate_settings, so every bad value reads alike
    help_text = f.metadata["help"]
    if f.metadata.get("choices"):
        help_text += ": " + ", ".join(map(str, f.metadata["choices"]))
    elif isinstance(f.metadata.get("constraint"), (Interval, AnyOf)):
        help_text += f"; {f.metadata['constraint']}"
    if layered:
        stated = _default_text(f.name, f.default)
        help_text += f" ({stated})" if stated else ""
    if kind is bool:
        extra["metavar"] = FLAG
    elif f.metadata.get("multiple"):
        extra["metavar"] = "NAME[,NAME]"
    option = typer.Option(*names, help=help_text, show_default=not layered, **extra)
    kind = list[kind] if f.metadata.get("multiple") else kind
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Optional[kind], option],
                             default=None if layered else f.default)


def setting_options(cls: type, *, layered: bool = False) -> Callable[[Callable], Callable]:
    """Give a command an option for every setting of `cls` that declares a CLI flag.

    The command receives them as `settings`: a validated `cls` instance, or (`layered`) a dict of the flags given.
    """
    declared = [f for f in dataclasses.fields(cls) if "flag" in f.metadata]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        params = [p for p in signature.parameters.values() if p.name != "settings"]
        taken = {p.name for p in params}
        params += [_setting_option(cls, f, layered=layered) for f in declared if f.name not in taken]
        names = [f.name for f in declared if f.name not in taken]

        @functools.wraps(command)
        def with_settings(*args: Any, **kwargs: Any) -> Any:
            values = {name: ",".join(value) if isinstance(value, list) else value
                      for name, value in ((name, kwargs.pop(name)) for name in names)}
            if layered:
                return command(*args, settings={k: v for k, v in values.items() if v is not None}, **kwargs)
            settings = cls(**values)
            validate_settings(settings, flags=True)
            return command(*args, settings=settings, **kwargs)

        with_settings.__signature__ = signature.replace(parameters=params)
        return with_settings

    return decorate


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tagnet {tagnet.__version__}")
        raise typer.Exit()


def _help_without_command(ctx: typer.Context) -> None:
    """A bare `tagnet` (or `tagnet data`) prints its help and exits 0."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context,
          version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, metavar=FLAG,
                                                help="Print the version and exit.")] = False) -> None:
    """Multi-label classification: label files in, trained model, metrics and predictions out."""
    _help_without_command(ctx)


@data_app.callback(invoke_without_command=True)
def _data(ctx: typer.Context) -> None:
    """Check label files and images; split them for training."""
    _help_without_command(ctx)


def _modality_and_options(labels: Path, options: dict, *, text_column: str | None, tabular: bool,
                          label_count: int | None, labels_xml: Path | None) -> tuple[str, dict]:
    """What LABELS holds (tagnet.modalities.detect_name) and the read options for it (feature-table ones added)."""
    from tagnet.modalities import detect_name

    table_only = {key: value for key, value in (("label_count", label_count), ("labels_xml", labels_xml))
                  if value is not None}
    options = {**options, **table_only}
    return detect_name(labels, options, text_column=text_column, tabular=tabular), options


@data_app.command("check")
@label_file_options()
def data_check(
    labels: LabelsArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the item ids are relative to")] = None,
    min_examples: Annotated[int, typer.Option("--min-examples", min=0,
                                              help="warn about labels with fewer examples")] = 5,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the report as JSON here")] = None,
    audit: Annotated[bool, typer.Option("--audit", metavar=FLAG, help="also list likely label errors (see tagnet audit)")] = False,
    hierarchy: Annotated[Optional[Path], typer.Option("--hierarchy", help="also check the labels against this hierarchy "
                                                      "(paths a/b/c per line, or a YAML tree)")] = None,
    hierarchy_separator: Annotated[Optional[str], typer.Option(
        "--hierarchy-separator", help="the paths' separator (default /); without --hierarchy, split the label names "
                                      "at it")] = None,
    tabular: TabularOpt = False,
    label_count: LabelCountOpt = None,
    labels_xml: LabelsXmlOpt = None,
    options: LabelFileOptions = None,
) -> None:
    """Check a label file and its images, or a feature table (ARFF, CSV) and its columns; list every problem
    with its row or file (exit 1 if unusable)."""
    modality, options = _modality_and_options(labels, options, text_column=None, tabular=tabular,
                                              label_count=label_count, labels_xml=labels_xml)
    report = check_dataset(labels, images_dir=images, min_examples=min_examples, tabular=modality == "tabular",
                           hierarchy=hierarchy, hierarchy_separator=hierarchy_separator, **options)
    from tagnet.report.data_check import render_report

    render_report(report, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if audit and report.usable:
        from tagnet.curation.workflow import audit_labels
        from tagnet.report.terminal import render_issues

        render_issues(audit_labels(labels, images_dir=images, tabular=modality == "tabular", read_options=options),
                      Console(), top=10)
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
    from tagnet.data.feature_table import is_feature_table
    from tagnet.report.terminal import render_split

    if is_feature_table(labels):
        raise ConfigError(f"{labels} is a feature table; tagnet data split writes label files. `tagnet train` holds out "
                          "a stratified val_fraction of a feature table itself (--set val_fraction=0.2), or takes --val FILE")
    parts = split_table(read_labels(labels, **options), val=val, test=test, seed=seed)
    render_split(parts, Console(), paths=write_split(parts, out, source=labels))


# ---- training, evaluation, prediction ----
def _settings_from(config_file: Path | None, overrides: list[str] | None, flags: dict[str, Any]) -> TrainConfig:
    """TrainConfig from defaults < --config FILE < --set KEY=VALUE < explicit flags."""
    config = load_config(config_file) if config_file else TrainConfig()
    values = parse_overrides(overrides or [])
    values.update(flags)
    return config.updated(**values)


ConfigFileOpt = Annotated[Optional[Path], typer.Option(
    "--config", help="JSON or YAML settings file (.json, .yaml, .yml; e.g. from tagnet tune or a run's config.yaml)")]
OverridesOpt = Annotated[Optional[list[str]], typer.Option("--set", help="any setting as KEY=VALUE (see tagnet settings)")]
TextColumnOpt = Annotated[Optional[str], typer.Option("--text-column", help="the column (or JSON key) of LABELS holding "
                                                                            "texts: train a text model")]
ImagesOpt = Annotated[Optional[Path], typer.Option("--images", help="folder the image paths in LABELS are relative to")]


@app.command("train")
@label_file_options()
@setting_options(TrainConfig, layered=True)
def train_command(
    labels: Annotated[Optional[Path], typer.Argument(
        help=f"the training data: {LABEL_FILES}, or an ARFF/CSV feature table; required unless --resume",
        show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="continue the interrupted run in this folder")] = None,
    from_run: Annotated[Optional[Path], typer.Option("--from", help="grow this finished run: LABELS adds labels or "
                                                     "examples; only their heads train, the others stay as they are")] = None,
    images: ImagesOpt = None,
    val: Annotated[Optional[Path], typer.Option("--val", help="validation label file; default: a stratified split of LABELS")] = None,
    out: Annotated[Path, typer.Option("--out", help="run folder to write")] = Path("runs/train"),
    force: Annotated[bool, typer.Option("--force", metavar=FLAG, help="replace a finished run already in --out")] = False,
    config_file: ConfigFileOpt = None,
    text_column: TextColumnOpt = None,
    tabular: TabularOpt = False,
    label_count: LabelCountOpt = None,
    labels_xml: LabelsXmlOpt = None,
    overrides: OverridesOpt = None,
    options: LabelFileOptions = None,
    settings: Optional[dict] = None,
) -> None:
    """Train a model on LABELS and write a run folder (artifact, metrics per epoch, config)."""
    from tagnet.engine import is_main_process
    from tagnet.report.model_card import CARD_FILE
    from tagnet.report.terminal import render_metrics
    from tagnet.training.trainer import resume_training, train

    console = Console()
    if resume is not None:
        result = resume_training(resume, console=console)
        render_metrics(result.report, console)
        console.print(f"run resumed and finished in {result.run_dir} (artifact: {result.artifact_dir})")
        return
    if labels is None:
        raise TagnetError("tagnet train needs a LABELS file (or --resume RUN)")
    config = _settings_from(config_file, overrides, settings or {})
    modality, options = _modality_and_options(labels, options, text_column=text_column, tabular=tabular,
                                              label_count=label_count, labels_xml=labels_xml)
    result = train(labels, out_dir=out, images_dir=images, text_column=text_column, val_labels=val, config=config,
                   read_options=options, modality=None if from_run else modality, console=console, force=force,
                   from_run=from_run)  # a grown run reads LABELS as its parent's data unless told otherwise
    if is_main_process():  # one report per distributed run
        render_metrics(result.report, console)
        console.print(f"run written to {result.run_dir} (artifact: {result.artifact_dir}) in {result.seconds:.0f} s")
        if result.privacy:
            spent = result.privacy
            console.print(f"differential privacy: ε = {spent['epsilon']:.3g}, δ = {spent['delta']:.2g} for the head; "
                          f"{len(spent['not_covered'])} step(s) not covered, listed in {result.artifact_dir / CARD_FILE}")


@app.command("evaluate")
@label_file_options()
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    labels: LabelsArg,
    images: ImagesOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the full report as JSON here")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", min=0.0, max=1.0, help="predict p >= T for every label instead of the model's fitted thresholds")] = None,
    options: LabelFileOptions = None,
) -> None:
    """Score a trained model on labelled data: mAP, per-label AP/P/R/F1, micro/macro/samples F1, Hamming loss..."""
    from tagnet.evaluation.evaluate import evaluate, evaluate_side_by_side
    from tagnet.report.terminal import RULE_KEYS, render_metrics, render_rules

    others = {}
    if threshold is None:  # the model's thresholds, and beside them p >= 0.5 and the per-label F1 thresholds
        report, others, skipped = evaluate_side_by_side(run, labels, images_dir=images, read_options=options)
    else:
        report, skipped = evaluate(run, labels, images_dir=images, read_options=options, threshold=threshold)
    console = Console()
    for reason in skipped.values():
        console.print(f"[yellow]skipped[/yellow] {reason}")
    render_metrics(report, console)
    rules = {name: {key: getattr(other, key) for key in RULE_KEYS} for name, other in others.items()}
    if rules:
        render_rules(report, others, console)
    side = {**({"at_p05": rules["p>=0.5"]} if "p>=0.5" in rules else {}), **({"rules": rules} if rules else {})}
    if json_out is not None:
        json_out.write_text(json.dumps({**report.to_dict(), **side, "skipped": skipped}, indent=2) + "\n",
                            encoding="utf-8")
        console.print(f"report written to {json_out}")


@app.command("calibrate")
@label_file_options()
@setting_options(CalibrateSettings, layered=True)
def calibrate_command(
    run: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    labels: LabelsArg,
    images: ImagesOpt = None,
    options: LabelFileOptions = None,
    settings: Optional[dict] = None,
) -> None:
    """Refit the thresholds (and per-label temperature scaling) on new labelled data, without retraining; the former
    tagnet.json is kept as tagnet.json.previous."""
    from tagnet.decisions.refit import calibrate
    from tagnet.report.terminal import render_calibration

    result = calibrate(run, labels, images_dir=images, read_options=options, **settings)
    render_calibration(result, Console())


@app.command("predict")
@setting_options(PredictSettings)
def predict_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="image files, folders or glob patterns; for a tabular model ARFF/CSV tables; for a text model text files")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="write every probability to FILE.csv or FILE.json")] = None,
    text: Annotated[Optional[list[str]], typer.Option("--text", help="text model: a text to label (repeatable)")] = None,
    text_file: Annotated[Optional[Path], typer.Option("--text-file", help="text model: a UTF-8 file, one text per line")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="keep the rows already in --output (CSV, TSV or JSONL) and "
                                                          "predict only the inputs not in it")] = False,
    settings: Optional[PredictSettings] = None,
) -> None:
    """Predict labels of new images (or texts, or feature rows); unreadable files are reported and skipped. With a
    CSV, TSV or JSONL --output, rows are written as they are predicted (memory stays bounded) and --resume continues."""
    from tagnet.inference.predictor import Predictor, check_output
    from tagnet.inference.runtime import Spread
    from tagnet.inference.streaming import STREAM_SUFFIXES
    from tagnet.report.terminal import render_predictions

    if output is not None:
        check_output(output)
    if resume and (output is None or output.suffix.lower() not in STREAM_SUFFIXES):
        raise ConfigError(f"--resume continues a streamed --output file ({', '.join(STREAM_SUFFIXES)}); got "
                          f"{output or 'no --output'}")
    spread = Spread.of(settings)
    streamed = output is not None and output.suffix.lower() in STREAM_SUFFIXES and not text
    if spread.active and not streamed:
        raise ConfigError(f"--strategy {settings.strategy} shares the inputs among processes that write a streamed "
                          f"--output ({', '.join(STREAM_SUFFIXES)}); got {output or 'no --output'}")
    predictor = Predictor(artifact, batch_size=settings.batch_size, runtime=settings.runtime)
    if streamed:
        _stream_predict(predictor, [text_file] if text_file else inputs or [], output, resume=resume, spread=spread)
        return
    if text:
        results = predictor.predict(text)
    else:
        results = predictor.predict_paths([text_file] if text_file else inputs or [])
    render_predictions(results, Console())
    if output is not None:
        Console().print(f"predictions written to {results.write(output)}")
    if not results.predictions:
        raise typer.Exit(1)


def _stream_predict(predictor, paths: list, output: Path, *, resume: bool, spread) -> None:
    """`tagnet predict` into a CSV/TSV/JSONL file written chunk by chunk (tagnet.inference.streaming); with a ddp
    `spread`, only rank 0 writes and reports."""
    from tagnet.inference.predictor import PredictionResults
    from tagnet.inference.streaming import stream_predictions
    from tagnet.report.terminal import render_predictions

    summary = stream_predictions(predictor, paths, output, resume=resume, spread=spread)
    if summary is None:  # another rank of a distributed prediction: rank 0 reports
        return
    shown = PredictionResults(summary.first, predictor.label_names, summary.errors)
    render_predictions(shown, Console(), total=summary.written)
    kept = f" (kept {summary.resumed} already there)" if summary.resumed else ""
    Console().print(f"predictions written to {summary.path}{kept}")
    if not summary.written and not summary.resumed:
        raise typer.Exit(1)


@app.command("audit")
@label_file_options()
def audit_command(
    labels: LabelsArg,
    output: Annotated[Path, typer.Option("--output", help="CSV of the likely errors: item, label, issue, given, "
                                                          "probability, score")],
    images: ImagesOpt = None,
    text_column: TextColumnOpt = None,
    tabular: TabularOpt = False,
    label_count: LabelCountOpt = None,
    labels_xml: LabelsXmlOpt = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="cross-validation folds of the out-of-fold model")] = 5,
    page: Annotated[Optional[Path], typer.Option("--html", help="also write an HTML page of the ranked issues")] = None,
    config_file: ConfigFileOpt = None,
    overrides: OverridesOpt = None,
    options: LabelFileOptions = None,
) -> None:
    """List likely label errors (missing and wrong tags) of a label file: out-of-fold models on the frozen encoder's
    features, ranked by cleanlab."""
    from tagnet.curation.workflow import audit_labels
    from tagnet.report.terminal import render_issues

    modality, options = _modality_and_options(labels, options, text_column=text_column, tabular=tabular,
                                              label_count=label_count, labels_xml=labels_xml)
    result = audit_labels(labels, images_dir=images, text_column=text_column, tabular=modality == "tabular",
                          read_options=options, config=_settings_from(config_file, overrides, {}), folds=folds,
                          output=output, page=page)
    render_issues(result, Console(), top=10)


@app.command("suggest")
def suggest_command(
    run: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    pool: Annotated[list[str], typer.Argument(help="unlabelled inputs as `tagnet predict` takes them: image files, "
                                                   "folders or globs; text files; feature tables")],
    n: Annotated[int, typer.Option("--n", min=1, help="how many inputs to suggest")],
    output: Annotated[Path, typer.Option("--output", help="label file to write (CSV), every cell empty to fill in")],
    seed: Annotated[int, typer.Option("--seed", help="random seed of the choice")] = 0,
) -> None:
    """Choose which unlabelled inputs to label next (uncertain and varied) and write a label file for them."""
    from tagnet.curation.workflow import suggest_labels

    result = suggest_labels(run, pool, n=n, output=output, seed=seed)
    console = Console()
    for reason in result.errors.values():
        console.print(f"[yellow]skipped[/yellow] {reason}")
    console.print(f"{len(result.sources)} of {result.pool} inputs to label next written to {result.output}; fill in "
                  "0 or 1 (empty = unknown) and train on it", soft_wrap=True)


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="folder for the demo's data, run and predictions")] = Path("tagnet-demo"),
    time_budget: Annotated[Optional[str], typer.Option("--time-budget", help="wall time the training may take (the "
                                                       "recipe that fits is chosen and said), e.g. 5m; default 1m")] = None,
) -> None:
    """Generate synthetic shapes, train, evaluate and predict: the whole pipeline offline in a few minutes."""
    from tagnet.demo import run_demo

    run_demo(out, **({"time_budget": time_budget} if time_budget else {}))


@app.command("settings")
def settings_command() -> None:
    """List every training setting with its type, default, constraint and meaning, then the rules between them."""
    table = Table("setting", "type", "default", "constraint", "meaning")
    for row in describe_settings():
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print("Rules between settings:")
    for rule in TRAIN_RULES:
        console.print(f"  {rule.says}", highlight=False)


@app.command("export")
@label_file_options(skip=("format",))  # --format is the export format here
@setting_options(ExportSettings)
def export_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="the .onnx file; default ARTIFACT/model.onnx, which predict and serve then use")] = None,
    val: Annotated[Optional[Path], typer.Option("--val", help="validation label file: report the mAP of the "
                                                               "ONNX model(s) on it")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the image paths in --val are relative to")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the export report as JSON here")] = None,
    options: LabelFileOptions = None,
    settings: Optional[ExportSettings] = None,
) -> None:
    """Export a model to ONNX (probabilities out; labels, thresholds, preprocessing inside), checked against PyTorch."""
    from tagnet.inference.export import export_onnx
    from tagnet.report.terminal import render_export

    report = export_onnx(artifact, out=out, format=settings.format, opset=settings.opset, quantize=settings.quantize,
                         val_labels=val, images_dir=images, read_options=options)
    render_export(report, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


@app.command("serve")
@setting_options(ServeSettings)
def serve_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder")],
    settings: Optional[ServeSettings] = None,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /labels, /health, /metrics, a web page at /, API docs at /docs,
    and the Open Inference Protocol v2 (KServe, Triton clients) at /v2/models/RUN_FOLDER_NAME."""
    from tagnet.serve import run_server

    run_server(artifact, settings)


@app.command("tune")
@label_file_options()
@setting_options(TuneSettings)
def tune_command(
    labels: LabelsArg,
    images: ImagesOpt = None,
    out: Annotated[Path, typer.Option("--out", help="study folder: study.db, best_config.json, best_run/")] = Path("runs/tune"),
    val: Annotated[Optional[Path], typer.Option("--val", help="validation label file; default: LABELS split once")] = None,
    backbones: Annotated[Optional[str], typer.Option(
        "--backbones", help="comma-separated backbones the search chooses from (default the modality's own: "
                            "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2, mlp, "
                            "minilm_l6)")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="JSON or YAML settings the search leaves fixed")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="a fixed setting as KEY=VALUE (see tagnet settings)")] = None,
    text_column: Annotated[Optional[str], typer.Option("--text-column", help="search for a text model on this column")] = None,
    tabular: TabularOpt = False,
    label_count: LabelCountOpt = None,
    labels_xml: LabelsXmlOpt = None,
    options: LabelFileOptions = None,
    settings: Optional[TuneSettings] = None,
) -> None:
    """Search learning rate, weight decay, dropout, head width, loss and augmentation (images) or label smoothing
    and mixup (text, tables) with Optuna for the best validation mAP (or --metric)."""
    from tagnet.tuning.search import tune

    console = Console()
    modality, options = _modality_and_options(labels, options, text_column=text_column, tabular=tabular,
                                              label_count=label_count, labels_xml=labels_xml)
    result = tune(labels, images_dir=images, val_labels=val, out_dir=out, trials=settings.trials, timeout=settings.timeout,
                  base_config=_settings_from(config_file, overrides, {}),
                  backbones=backbones.split(",") if backbones else None, read_options=options, console=console,
                  modality=modality, text_column=text_column, metric=settings.metric)
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
    from tagnet.report.html import write_report

    Console().print(f"report written to {write_report(run, out=out, max_images=worst)}")


@app.command("explain")
def explain_command(
    artifact: Annotated[Path, typer.Argument(help="run folder or artifact folder of an image model")],
    inputs: Annotated[list[str], typer.Argument(help="image files, folders or glob patterns")],
    labels: Annotated[Optional[str], typer.Option(
        "--labels", help="comma-separated labels to explain (default: each image's predicted labels)")] = None,
    out: Annotated[Path, typer.Option("--out", help="folder for the heatmap PNGs")] = Path("explanations"),
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="images per Grad-CAM batch")] = 32,
) -> None:
    """Grad-CAM heatmap of each label's logit over each image: one PNG per image and label."""
    from tagnet.data.images import find_images
    from tagnet.inference.explain import explain_paths
    from tagnet.inference.predictor import Predictor

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
    """Console-script entry point: a user error prints `error: <message>` on stderr and exits 2 (Ctrl+C: 130)."""
    try:
        app()
    except TagnetError as e:
        _fail(str(e))
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        _fail(f"{e.strerror}: {e.filename}" if e.filename else str(e))
    except SystemExit as e:  # typer turns Ctrl+C outside a training phase (Interrupted there) into a silent exit 130
        if isinstance(e.__context__ and e.__context__.__cause__, KeyboardInterrupt):
            _fail("interrupted", code=130)
        raise


def _fail(message: str, *, code: int = 2) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


for _typer in (app, data_app):  # every command's --help without `<bool>` (see _Command)
    for _info in _typer.registered_commands:
        _info.cls = _Command if _info.cls in (None, typer.core.TyperCommand) else _info.cls


if __name__ == "__main__":
    main()

