"""Predictions of many inputs written as they are made, chunk by chunk, to a CSV/TSV or JSON Lines file that a later
call can resume: memory stays bounded by the chunk, not by the number of inputs."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagnet.errors import DataError
from tagnet.inference.predictor import Prediction, PredictionResults, Predictor, csv_rows

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
    with path.open(encoding="utf-8", newline="") as handle:  # CSV rows end in \r\n: kept as written
        text = handle.read()
    if text and not text.endswith("\n"):  # killed mid-line: that row is predicted again
        text = text[:text.rfind("\n") + 1]
        with path.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
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
                       chunk: int = CHUNK, keep_first: int = 50, spread=None) -> StreamSummary | None:
    """Predict the inputs in `paths` (as Predictor.predict_paths reads them) `chunk` at a time, appending each chunk's
    rows to `output` (.csv/.tsv as PredictionResults.write writes them, or .jsonl, one prediction per line) and
    flushing it to disk. With `resume`, inputs already in `output` are skipped and the rest appended; without it an
    existing `output` is replaced. With a `spread` (tagnet.inference.runtime.Spread, strategy ddp) the inputs are
    shared among its processes and rank 0 writes the same file in the same order; the other ranks return None.

    Returns a StreamSummary. Raises DataError for an unsupported suffix or a resume file tagnet did not write.
    """
    path = Path(output)
    if path.suffix.lower() not in STREAM_SUFFIXES:
        raise DataError(f"--output {path}: streamed predictions go to {', '.join(STREAM_SUFFIXES)} files")
    sources, items, errors = predictor.modality.read_unlabeled(paths, predictor)
    summary, writer = StreamSummary(path, errors=dict(errors)), []
    with ExitStack() as stack:

        def todo() -> list[int]:  # once, on the writing process
            done = done_sources(path) if resume else set()
            chosen = [i for i, source in enumerate(sources) if source not in done]
            summary.resumed = len(sources) - len(chosen)
            writer.append(stack.enter_context(_open_stream(path, predictor.label_names, append=bool(done))))
            return chosen

        def add(results: PredictionResults) -> None:
            writer[0](results)
            summary.written += len(results)
            summary.errors.update(results.errors)
            summary.first += results.predictions[:max(0, keep_first - len(summary.first))]

        if spread is not None and spread.active:
            return summary if _spread_chunks(predictor, sources, items, todo, add, spread) else None
        for results in _chunks(predictor, sources, items, todo(), chunk):
            add(results)
    return summary


def _chunks(predictor: Predictor, sources: list[str], items: list, todo: list[int],
            chunk: int) -> Iterator[PredictionResults]:
    for start in range(0, len(todo), chunk):
        rows = todo[start:start + chunk]
        yield predictor.predict([items[i] for i in rows], sources=[sources[i] for i in rows])


def _spread_chunks(predictor: Predictor, sources: list[str], items: list, todo, add, spread) -> bool:
    """Predictions of the inputs `todo()` chooses, shared among the processes of `spread` and handed to `add` in input
    order on rank 0 (tagnet.engine.distributed); True on rank 0."""
    from tagnet.engine.distributed import map_in_order

    def step(indices: list[int], device) -> tuple[np.ndarray, dict[str, str]]:
        if predictor.device != device:  # this rank's own GPU, or the CPU
            predictor.to(device)
        probs, kept, errors = predictor.modality.probabilities(predictor, [items[i] for i in indices])
        rows = np.full((len(indices), len(predictor.label_names)), np.nan, np.float32)  # NaN: not readable
        rows[kept] = probs
        return rows, errors

    def emit(indices: np.ndarray, rows: np.ndarray, errors: dict[str, str]) -> None:
        read = ~np.isnan(rows).any(axis=1)
        add(predictor.results(rows[read], sources=[sources[i] for i in indices[read]], errors=errors))

    return map_in_order(step, todo, batch_size=predictor.batch_size, spread=spread, emit=emit)


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
        if self.writer is None:
            self.handle.write("".join(json.dumps(prediction.to_dict()) + "\n" for prediction in results.predictions))
        else:
            self.handle.writelines(csv_rows(results, "\t" if self.path.suffix.lower() == ".tsv" else ","))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def __exit__(self, *exc) -> None:
        self.handle.close()
