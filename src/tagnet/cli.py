"""The `tagnet` command line: parses arguments, calls the library, prints results."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

import tagnet
from tagnet.data.check import check_dataset, render_report
from tagnet.data.labels import read_labels
from tagnet.data.split import render_split, split_table, write_split
from tagnet.errors import TagnetError

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


def read_options(*, format: str | None = None, id_column: str | None = None, labels_column: str | None = None,
                 separator: str | None = None, label_columns: str | None = None,
                 label_names: Path | None = None, labels_are_indices: bool = False,
                 no_header: bool = False, delimiter: str | None = None) -> dict[str, Any]:
    """read_labels keyword arguments from the shared label-file options above."""
    return {"format": format, "id_column": id_column, "labels_column": labels_column, "separator": separator,
            "label_columns": [c.strip() for c in label_columns.split(",")] if label_columns else None,
            "label_names_file": label_names, "labels_are_indices": labels_are_indices or None,
            "no_header": no_header, "delimiter": delimiter}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tagnet {tagnet.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Multi-label classification: label files in, trained model, metrics and predictions out."""


@data_app.command("check")
def data_check(
    labels: LabelsArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder the item ids are relative to")] = None,
    min_examples: Annotated[int, typer.Option("--min-examples", min=0,
                                              help="warn about labels with fewer examples")] = 5,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the report as JSON here")] = None,
    format: FormatOpt = None, id_column: IdColumnOpt = None, labels_column: LabelsColumnOpt = None,
    separator: SeparatorOpt = None, label_columns: LabelColumnsOpt = None, label_names: LabelNamesOpt = None,
    labels_are_indices: IndicesOpt = False, no_header: NoHeaderOpt = False, delimiter: DelimiterOpt = None,
) -> None:
    """Check a label file and its images; list every problem with its row or file (exit 1 if unusable)."""
    options = read_options(format=format, id_column=id_column, labels_column=labels_column, separator=separator,
                           label_columns=label_columns, label_names=label_names,
                           labels_are_indices=labels_are_indices, no_header=no_header, delimiter=delimiter)
    report = check_dataset(labels, images_dir=images, min_examples=min_examples, **options)
    render_report(report, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    raise typer.Exit(0 if report.usable else 1)


@data_app.command("split")
def data_split(
    labels: LabelsArg,
    out: Annotated[Path, typer.Option("--out", help="folder for the train, val and test files")],
    val: Annotated[float, typer.Option("--val", help="share of items for validation")] = 0.2,
    test: Annotated[float, typer.Option("--test", help="share of items for a test part (0 = none)")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="random seed; the same seed gives the same split")] = 0,
    format: FormatOpt = None, id_column: IdColumnOpt = None, labels_column: LabelsColumnOpt = None,
    separator: SeparatorOpt = None, label_columns: LabelColumnsOpt = None, label_names: LabelNamesOpt = None,
    labels_are_indices: IndicesOpt = False, no_header: NoHeaderOpt = False, delimiter: DelimiterOpt = None,
) -> None:
    """Split a label file into train, val (and test) files that keep each label's share."""
    options = read_options(format=format, id_column=id_column, labels_column=labels_column, separator=separator,
                           label_columns=label_columns, label_names=label_names,
                           labels_are_indices=labels_are_indices, no_header=no_header, delimiter=delimiter)
    parts = split_table(read_labels(labels, **options), val=val, test=test, seed=seed)
    render_split(parts, Console(), paths=write_split(parts, out, source=labels))


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
