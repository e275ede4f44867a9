"""Likely label errors (missing and wrong tags) from out-of-fold probabilities and label context, with cleanlab."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tagnet.data.feature_table import fit_standardization, standardize
from tagnet.engine.linear import fit_logistic
from tagnet.errors import ConfigError, DataError

ISSUE_COLUMNS = ("item", "label", "issue", "given", "probability", "score")
CONTEXT_LABELS = 256  # the most frequent labels that context_probabilities reads as an item's other labels


@dataclass(frozen=True)
class LabelIssue:
    """One likely error: `label` of `item` is "missing" (given 0, probably present) or "wrong"
    (given 1, probably absent); `score` in [0, 1], higher = more likely an error."""

    item: str
    label: str
    issue: str
    given: int
    probability: float
    score: float


def _checked(targets: np.ndarray, probs: np.ndarray | None,
             known: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Targets (bool), probabilities and known mask as arrays of one shape (items, labels).

    Raises:
        DataError: the shapes disagree.
    """
    y = np.asarray(targets).astype(bool)
    mask = np.ones(y.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    p = None if probs is None else np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or mask.shape != y.shape or (p is not None and p.shape != y.shape):
        raise DataError(f"targets {y.shape}, probabilities {None if p is None else p.shape} and known {mask.shape} "
                        "must all have shape (items, labels)")
    return y, p, mask


def _strengths(c: float | Sequence[float], *, folds: int, items: int) -> list[float]:
    """The regularisation strengths `c` as a list; ConfigError unless 2 <= folds <= items and every c > 0."""
    cs = [float(c)] if np.isscalar(c) else [float(v) for v in c]
    if not 2 <= folds <= items:
        raise ConfigError(f"folds={folds} must be from 2 to the number of items ({items})")
    if not cs or min(cs) <= 0:
        raise ConfigError(f"c={c!r} must be one or more numbers > 0")
    return cs


def _folds(y: np.ndarray, mask: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) of each of `folds` folds, stratified by the known present labels."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    present = y & mask
    strata = np.column_stack([present, ~present]) if present.shape[1] == 1 else present
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), strata.astype(int)))


def _single_class(y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels with one class only among their known cells, those labels' share of present cells)."""
    counts, positives = mask.sum(axis=0), (y & mask).sum(axis=0)
    one_class = np.flatnonzero((positives == 0) | (positives == counts))
    rate = np.divide(positives, counts, out=np.full(len(counts), 0.5), where=counts > 0)
    return one_class, rate[one_class]


def out_of_fold_probabilities(
    features: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    c: float | Sequence[float] = (0.01, 0.1, 1.0),
) -> np.ndarray:
    """Out-of-fold probabilities (n_items, n_labels) of one-vs-rest logistic regressions on features.

    For precomputed features (image backbone features, sentence embeddings, table rows): the items are
    split into `folds` folds by multi-label stratification; each fold's probabilities come from models
    trained on the other folds (standardised there), one per label, on the rows where the label is known
    (every label and c at once: tagnet.engine.linear.fit_logistic).
    A label with one class only in the training rows gets that class's share as its probability.

    Args:
        features: (n_items, n_features) numbers (NaN = missing, standardised to the mean).
        targets: (n_items, n_labels) 0/1; known: False where a value is unknown.
        c: inverse L2 regularisation strength (as scikit-learn's LogisticRegression's C), or several: the one
            whose out-of-fold probabilities have the lowest log loss over the known cells is used.
    Raises:
        ConfigError: folds < 2 or more folds than items, or a c <= 0; DataError: shapes disagree.
    """
    y, _, mask = _checked(targets, None, known)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise DataError(f"features {x.shape} must have shape (items, features) with {len(y)} items")
    cs = _strengths(c, folds=folds, items=len(y))
    probs = np.zeros((len(cs), *y.shape))
    for train, held in _folds(y, mask, folds, seed):
        mean, std = fit_standardization(x[train])
        x_train, x_held = standardize(x[train], mean, std), standardize(x[held], mean, std)
        for k, strength in enumerate(cs):  # each c on its own: the same probabilities whichever others are given
            [[(coef, intercept)]] = fit_logistic(x_train, y[train], mask[train], Cs=(strength,))
            probs[k][held] = 1.0 / (1.0 + np.exp(-(x_held @ coef.T.astype(np.float64) + intercept)))
        one_class, rate = _single_class(y[train], mask[train])
        probs[:, held[:, None], one_class] = rate
    return _lowest_log_loss(probs, y, mask)


def _lowest_log_loss(candidates: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The one of (k, items, labels) candidate probabilities with the lowest mean log loss over the known cells."""
    clipped = np.clip(candidates[:, mask], 1e-12, 1 - 1e-12)
    log_loss = -np.where(y[mask], np.log(clipped), np.log1p(-clipped)).mean(axis=1)
    return candidates[int(np.argmin(log_loss))]


def context_probabilities(
    targets: np.ndarray,
    probs: np.ndarray,
    known: np.ndarray | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    c: float | Sequence[float] = (1.0, 10.0),
) -> np.ndarray:
    """Out-of-fold probability of each label given the model's evidence for it and the item's other labels.

    Label j of an item is predicted from logit(probs[:, j]) (out-of-fold evidence from its inputs) and the item's
    given values of the other labels (the CONTEXT_LABELS most frequent; an unknown value counts as its probability),
    by one logistic regression per label fitted jointly (_fit_context, all labels at once) on the training folds:
    a tag that does not fit the rest of the item's label set (a lone wrong tag, a label set missing the tag its
    other tags imply) gets a probability that contradicts it even where the inputs alone are ambiguous.

    Args:
        targets: (n_items, n_labels) given 0/1; probs: (n_items, n_labels) out-of-fold probabilities (e.g.
            out_of_fold_probabilities); known: False where a value is unknown (never fitted on).
        c: inverse L2 regularisation strength of the weights (as scikit-learn's LogisticRegression's C), or several:
            the one whose out-of-fold probabilities have the lowest log loss over the known cells is used.
    Raises:
        ConfigError: folds < 2 or more folds than items, or a c <= 0; DataError: shapes disagree.
    """
    y, p, mask = _checked(targets, probs, known)
    cs = _strengths(c, folds=folds, items=len(y))
    clipped = np.clip(p, 1e-4, 1 - 1e-4)
    evidence = np.log(clipped) - np.log1p(-clipped)
    columns = np.argsort(-(y & mask).sum(axis=0), kind="stable")[:CONTEXT_LABELS]
    context = np.where(mask, y, p)[:, columns]
    others = columns[None, :] != np.arange(y.shape[1])[:, None]  # (labels, context): a label never explains itself
    out = np.empty((len(cs), *p.shape))
    for train, held in _folds(y, mask, folds, seed):
        for k, strength in enumerate(cs):
            a, w, b = _fit_context(evidence[train], context[train], y[train], mask[train], others, strength)
            out[k][held] = 1.0 / (1.0 + np.exp(-(evidence[held] * a + context[held] @ w.T + b)))
        one_class, rate = _single_class(y[train], mask[train])
        out[:, held[:, None], one_class] = rate
    return _lowest_log_loss(out, y, mask)


def _fit_context(evidence: np.ndarray, context: np.ndarray, y: np.ndarray, mask: np.ndarray, allowed: np.ndarray,
                 c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a (labels,), w (labels, context), b (labels,)) of logit = evidence * a + context @ w.T + b minimising the mean
    log loss over the known cells + |a|^2 + |w|^2 over 2 c rows (w zero where not allowed), by L-BFGS (scipy)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    rows, labels = y.shape
    width = context.shape[1]
    weight, target, penalty = mask / rows, y.astype(np.float64), 1.0 / (c * rows)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, w, b = theta[:labels], theta[labels:-labels].reshape(labels, width) * allowed, theta[-labels:]
        z = evidence * a + context @ w.T + b
        residual = (expit(z) - target) * weight
        value = (weight * (np.logaddexp(0, z) - target * z)).sum() + penalty * (a @ a + (w * w).sum()) / 2
        grad_w = (residual.T @ context + penalty * w) * allowed
        return value, np.concatenate([(residual * evidence).sum(axis=0) + penalty * a, grad_w.ravel(), residual.sum(axis=0)])

    start = np.concatenate([np.ones(labels), np.zeros(labels * width), np.zeros(labels)])
    theta = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
    return theta[:labels], theta[labels:-labels].reshape(labels, width) * allowed, theta[-labels:]


def find_label_issues(
    targets: np.ndarray,
    probs: np.ndarray,
    known: np.ndarray | None = None,
    *,
    items: Sequence[str],
    label_names: Sequence[str],
) -> list[LabelIssue]:
    """Likely label errors, most likely first: cleanlab's confident learning per label
    (cleanlab.multilabel_classification: find_multilabel_issues_per_class flags the cells,
    get_label_quality_scores_per_class scores them; score = 1 - label quality).

    Unknown cells are never reported; cleanlab sees them as the model's own guess (p >= 0.5), which
    agrees with the model and so is no issue.

    Args:
        targets: (n_items, n_labels) given 0/1 labels.
        probs: (n_items, n_labels) out-of-fold probabilities (from models that never saw the item); `tagnet audit`
            passes context_probabilities (the inputs' evidence and the item's other labels).
        known: False where a value is unknown.
    Returns:
        LabelIssue rows sorted by score, highest first (ties: item order, then label order).
    Raises:
        DataError: shapes disagree, or the items or label names do not match them.
    """
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class

    y, p, mask = _checked(targets, probs, known)
    if len(items) != len(y) or len(label_names) != y.shape[1]:
        raise DataError(f"{len(items)} items and {len(label_names)} label names for targets of shape {y.shape}")
    given = np.where(mask, y, p >= 0.5)
    labels = [np.flatnonzero(row).tolist() for row in given]
    flagged = np.asarray(find_multilabel_issues_per_class(labels=labels, pred_probs=p), dtype=bool) & mask
    quality = np.asarray(get_label_quality_scores_per_class(labels=labels, pred_probs=p), dtype=np.float64)
    cells = np.argwhere(flagged)
    order = np.argsort(quality[flagged], kind="stable")
    return [LabelIssue(str(items[i]), str(label_names[j]), "wrong" if given[i, j] else "missing", int(given[i, j]),
                       float(p[i, j]), float(1 - quality[i, j])) for i, j in cells[order]]


def write_label_issues(issues: Sequence[LabelIssue], path: str | Path) -> Path:
    """Write issues as CSV with columns item, label, issue, given, probability, score; returns `path`."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(ISSUE_COLUMNS)
        for issue in issues:
            writer.writerow([issue.item, issue.label, issue.issue, issue.given, f"{issue.probability:.4f}", f"{issue.score:.4f}"])
    return path
