"""`tagnet audit` and `tagnet suggest` end to end: likely label errors in a label file, and which unlabelled inputs
to label next, both on the frozen encoder's features of any modality (tagnet.curation.audit, tagnet.curation.suggest do the maths)."""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tagnet import modalities
from tagnet.curation.audit import (LabelIssue, context_probabilities, find_label_issues, out_of_fold_probabilities,
                                  write_label_issues)
from tagnet.config.settings import TrainConfig
from tagnet.config.source import DataSource
from tagnet.data.decode import images_folder
from tagnet.data.label_table import LabelTable
from tagnet.errors import ConfigError, DataError
from tagnet.inference.predictor import Predictor
from tagnet.curation.suggest import suggest_items, write_label_requests


@dataclass
class AuditResult:
    """Likely label errors, most likely first, of `items` inputs; the CSV (and HTML page) written, if any."""

    issues: list[LabelIssue]
    items: int
    skipped: dict[str, str] = field(default_factory=dict)
    output: Path | None = None
    page: Path | None = None


@dataclass
class Encoded:
    """Frozen-encoder features (items, features) of the readable inputs, their label table, the inputs skipped
    (source -> why) and whether the inputs are images (thumbnails)."""

    features: np.ndarray
    table: LabelTable
    skipped: dict[str, str]
    thumbnails: bool


def frozen_features(labels: str | Path, *, images_dir: str | Path | None = None, text_column: str | int | None = None,
                    tabular: bool = False, read_options: dict | None = None, config: TrainConfig | None = None,
                    min_items: int = 2) -> Encoded:
    """The frozen-encoder output of every readable input of a label file read as `train` reads it (image features,
    sentence embeddings, standardised rows: what heads train on), with its label table.

    Raises:
        ConfigError: the settings' model is not a frozen encoder; DataError: bad data, or fewer than min_items inputs.
    """
    read_options = dict(read_options or {})
    kind = modalities.detect(labels, read_options, text_column=text_column, tabular=tabular)
    config = (config or TrainConfig()).for_modality(kind.name)
    config.validate()
    if not kind.frozen(config):
        raise ConfigError(f"audit needs a frozen pretrained encoder; {config.backbone} (pretrained={config.pretrained}) "
                          "has none: use the default backbone")
    source = DataSource(labels, images_dir=images_dir, text_column=text_column, tabular=tabular,
                        read_options=kind.read_options(read_options))
    data = kind.read(source)
    model = kind.build_model(config, data).eval()
    with tempfile.TemporaryDirectory(prefix="tagnet-audit-") as temp:
        cache_dir = Path(config.cache_dir or temp)
        data, _ = kind.prepare(data, model, cache_dir=cache_dir)
        if len(data) < min_items:
            raise DataError(f"{labels}: {len(data)} readable inputs; auditing with {min_items} folds needs at least "
                            f"{min_items}")
        state = kind.fit_state(model, data, np.arange(len(data)), text_column=text_column, read_options=source.read_options)
        features = kind.head_inputs(model, data, state, cache_dir=cache_dir, progress=False).array(dense=True)
    return Encoded(features, data.table, dict(data.skipped), kind.spec.thumbnails)


def audit_labels(labels: str | Path, *, images_dir: str | Path | None = None, text_column: str | int | None = None,
                 tabular: bool = False, read_options: dict | None = None, config: TrainConfig | None = None,
                 folds: int = 5, output: str | Path | None = None, page: str | Path | None = None) -> AuditResult:
    """Find likely label errors in a label file read as `train` reads it.

    Every input's frozen-encoder output (frozen_features) gets out-of-fold probabilities from `folds` logistic
    regressions, then out-of-fold probabilities given the item's other labels too (context_probabilities);
    tagnet.curation.audit.find_label_issues ranks the cells whose given label those contradict.
    Writes the issues as CSV to `output` and an HTML page (thumbnails for images) to `page`.

    Args:
        config: the encoder settings (backbone, image_size...; default the modality's); it must be a frozen
            pretrained encoder.
    Raises:
        ConfigError: the settings' model is not a frozen encoder, or folds is out of range; DataError: bad data.
    """
    config = config or TrainConfig()
    encoded = frozen_features(labels, images_dir=images_dir, text_column=text_column, tabular=tabular,
                              read_options=read_options, config=config, min_items=folds)
    table = encoded.table
    probs = out_of_fold_probabilities(encoded.features, table.targets, table.known, folds=folds, seed=config.seed)
    probs = context_probabilities(table.targets, probs, table.known, folds=folds, seed=config.seed)
    issues = find_label_issues(table.targets, probs, table.known, items=table.items, label_names=table.label_names)
    result = AuditResult(issues, len(table), encoded.skipped)
    if output is not None:
        result.output = write_label_issues(issues, output)
    if page is not None:
        result.page = write_issues_page(issues, page, images_dir=images_folder(table.meta, images_dir),
                                        thumbnails=encoded.thumbnails, source=str(labels))
    return result


def write_issues_page(issues: Sequence[LabelIssue], path: str | Path, *, images_dir: str | Path | None,
                      thumbnails: bool, source: str, limit: int = 200) -> Path:
    """One self-contained HTML page listing the ranked issues (the first `limit`), with image thumbnails."""
    from tagnet.data.images import resolve_image_paths
    from tagnet.report.html import CSS, _img, _thumbnail

    shown = list(issues)[:limit]
    paths = resolve_image_paths([issue.item for issue in shown], images_dir) if thumbnails else []
    rows = []
    for k, issue in enumerate(shown):
        thumb = _thumbnail(paths[k]) if thumbnails else None
        picture = _img(thumb, issue.item, "image/jpeg") if thumb else ""
        hint = "probably present, given 0" if issue.issue == "missing" else "probably absent, given 1"
        rows.append(f"<tr><td>{k + 1}</td><td>{picture}</td><td>{html.escape(issue.item)}</td>"
                    f"<td>{html.escape(issue.label)}</td><td>{issue.issue} ({hint})</td>"
                    f"<td>{issue.probability:.3f}</td><td>{issue.score:.3f}</td></tr>")
    title = f"Likely label errors in {source}"
    body = ("<table><tr><th>rank</th><th></th><th>item</th><th>label</th><th>issue</th><th>probability</th>"
            "<th>score</th></tr>" + "".join(rows) + "</table>")
    more = f"<p class='note'>{len(issues) - limit} more in the CSV</p>" if len(issues) > limit else ""
    text = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p class='note'>{len(issues)} likely "
            "errors, most likely first: the probability is out of fold (from models that never saw the item), given "
            "its inputs and its other labels</p>"
            f"{body}{more}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Suggestion:
    """The pool inputs to label next, in the order chosen, and the label file written for them."""

    sources: list[str]
    output: Path
    pool: int
    errors: dict[str, str] = field(default_factory=dict)


def suggest_labels(run: str | Path, pool: Sequence[str | Path], *, n: int, output: str | Path,
                   seed: int = 0) -> Suggestion:
    """Choose `n` inputs of `pool` (what `tagnet predict` takes: images, text files, feature tables) to label next
    (tagnet.curation.suggest.suggest_items on the model's probabilities and encoder features) and write a label file for them
    with every cell empty, to fill in with 0/1 and train on.

    Raises:
        DataError: no readable input in the pool; ConfigError: n out of range.
    """
    predictor = Predictor(run, runtime="torch")
    sources, items, errors = predictor.modality.read_unlabeled(list(pool), predictor)
    probs, features, kept, more = predictor.modality.features(predictor, items)
    errors = {**errors, **more}
    if not kept:
        raise DataError(f"no readable input in the pool {', '.join(map(str, pool))}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(kept):
        raise ConfigError(f"--n {n!r}: expected a number of inputs from 1 to the {len(kept)} readable in the pool")
    chosen = [sources[kept[i]] for i in suggest_items(probs, features, n=n, seed=seed)]
    return Suggestion(chosen, write_label_requests(output, chosen, label_names=predictor.label_names), len(kept), errors)
