"""Predictions of many inputs written as they are made, chunk by chunk, to a CSV/TSV or JSON Lines file that a later
call can resume: memory stays bounded by the chunk, not by the number of inputs."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tagnet.errors import DataError
from tagnet.inference.predictor import Prediction, PredictionResults, Predictor, prediction_row

STREAM_SUFFIXES = (".csv", ".tsv", ".jsonl")
CHUNK = 256  # inputs per model call between writes: the memory bound of a stream


@dataclass
class StreamSummary:
    """What a streamed prediction did: rows written now, rows already there (resumed), the first predictions (for the
    terminal) and the inputs that could not be read."""

    path: Path
    written: int = 0
    resumed: int = 0
    first: list[Prediction] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def done_sources(path: Path) -> set[str]:
    """Sources already in an earlier (maybe interrupted) output `path`; a cut-off last line is dropped from the file.

    Raises DataError when the file is not one this writer makes."""
    if not path.exists():
        return set()
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):  # killed mid-line: that row is predicted again
        text = text[:text.rfind("\n") + 1]
        path.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    if path.suffix.lower() == ".jsonl":
        try:
            return {json.loads(line)["source"] for line in lines if line.strip()}
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"--resume {path}: not a JSON Lines file of tagnet predictions ({exc})") from None
    rows = list(csv.reader(lines, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    if rows and rows[0][:2] != ["source", "labels"]:
        raise DataError(f"--resume {path}: its header is {rows[0][:2]}; expected a tagnet predictions file "
                        "starting with source,labels")
    return {row[0] for row in rows[1:] if row}


def stream_predictions(predictor: Predictor, paths: Sequence[str | Path], output: str | Path, *, resume: bool = False,
                       chunk: int = CHUNK, keep_first: int = 50) -> StreamSummary:
    """Predict the inputs in `paths` (as Predictor.predict_paths reads them) `chunk` at a time, appending each chunk's
    rows to `output` (.csv/.tsv as PredictionResults.write writes them, or .jsonl, one prediction per line) and
    flushing it to disk. With `resume`, inputs already in `output` are skipped and the rest appended; without it an
    existing `output` is replaced.

    Returns a StreamSummary. Raises DataError for an unsupported suffix or a resume file tagnet did not write.
    """
    path = Path(output)
    if path.suffix.lower() not in STREAM_SUFFIXES:
        raise DataError(f"--output {path}: streamed predictions go to {', '.join(STREAM_SUFFIXES)} files")
    done = done_sources(path) if resume else set()
    sources, items, errors = predictor.modality.read_unlabeled(paths, predictor)
    todo = [i for i, source in enumerate(sources) if source not in done]
    summary = StreamSummary(path, resumed=len(sources) - len(todo), errors=dict(errors))
    with _open_stream(path, predictor.label_names, append=bool(done)) as write:
        for results in _chunks(predictor, sources, items, todo, chunk):
            write(results)
            summary.written += len(results)
            summary.errors.update(results.errors)
            summary.first += results.predictions[:max(0, keep_first - len(summary.first))]
    return summary


def _chunks(predictor: Predictor, sources: list[str], items: list, todo: list[int],
            chunk: int) -> Iterator[PredictionResults]:
    for start in range(0, len(todo), chunk):
        rows = todo[start:start + chunk]
        yield predictor.predict([items[i] for i in rows], sources=[sources[i] for i in rows])


class _open_stream:
    """A context manager giving write(results): rows appended and flushed to disk after each chunk."""

    def __init__(self, path: Path, label_names: list[str], *, append: bool) -> None:
        self.path, self.label_names, self.append = path, label_names, append
        self.jsonl = path.suffix.lower() == ".jsonl"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a" if self.append else "w", newline="", encoding="utf-8")
        self.writer = None if self.jsonl else csv.writer(
            self.handle, delimiter="\t" if self.path.suffix.lower() == ".tsv" else ",")
        if not self.append and self.writer is not None:
            self.writer.writerow(["source", "labels"] + self.label_names)
        return self.write

    def write(self, results: PredictionResults) -> None:
        for prediction in results.predictions:
            if self.writer is None:
                self.handle.write(json.dumps(prediction.to_dict()) + "\n")
            else:
                self.writer.writerow(prediction_row(prediction, self.label_names))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def __exit__(self, *exc) -> None:
        self.handle.close()
