"""Tests of the label audit: out-of-fold probabilities, label context and cleanlab's label-issue finder."""

import csv

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss

from tagnet.curation.audit import (LabelIssue, context_probabilities, find_label_issues, out_of_fold_probabilities,
                                  write_label_issues)
from tagnet.errors import ConfigError, DataError


def _separable(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.3, 0.5, 0.4]).astype(np.uint8)
    x = np.column_stack([y * 3.0 + rng.normal(size=(n, 3)), rng.normal(size=(n, 4))])
    return x, y


def test_out_of_fold_probabilities_separate_the_labels_and_ignore_unknown_cells():
    x, y = _separable()
    probs = out_of_fold_probabilities(x, y, c=1.0)
    assert probs.shape == y.shape and ((probs >= 0) & (probs <= 1)).all()
    assert min(average_precision_score(y[:, j], probs[:, j]) for j in range(3)) > 0.95
    known = np.random.default_rng(1).random(y.shape) < 0.8
    flipped = np.where(known, y, 1 - y)
    assert np.array_equal(out_of_fold_probabilities(x, y, known, c=1.0), out_of_fold_probabilities(x, flipped, known, c=1.0))


def test_several_c_pick_the_lowest_out_of_fold_log_loss_and_one_class_labels_get_their_share():
    x, y = _separable(seed=2)
    y[:, 2] = 0
    single = {c: out_of_fold_probabilities(x, y, c=c) for c in (0.001, 1.0)}
    loss = {c: np.mean([log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(3)]) for c, p in single.items()}
    best = min(loss, key=loss.get)
    assert np.array_equal(out_of_fold_probabilities(x, y, c=(0.001, 1.0)), single[best])
    assert (single[1.0][:, 2] == 0).all()


@pytest.mark.parametrize("options, error, message", [
    ({"folds": 1}, ConfigError, "folds=1"), ({"c": 0.0}, ConfigError, "c=0.0"), ({"c": ()}, ConfigError, "c=()"),
])
def test_out_of_fold_settings_are_checked(options, error, message):
    x, y = _separable(n=20)
    with pytest.raises(error, match=message):
        out_of_fold_probabilities(x, y, **options)
    with pytest.raises(DataError, match="features"):
        out_of_fold_probabilities(x[:5], y)


def test_find_label_issues_names_the_cell_the_direction_and_ranks_by_confidence(tmp_path):
    rng = np.random.default_rng(3)
    y = (rng.random((60, 2)) < 0.5).astype(np.uint8)
    probs = np.where(y == 1, 0.9, 0.1) + rng.uniform(-0.05, 0.05, y.shape)
    probs[4, 0], y[4, 0] = 0.98, 0      # a tag the model is sure of is missing
    probs[9, 1], y[9, 1] = 0.03, 1      # a tag the model is sure is absent was given
    probs[12, 1], y[12, 1] = 0.99, 0    # same, but the cell is unknown: never reported
    known = np.ones(y.shape, dtype=bool)
    known[12, 1] = False
    items = [f"img{i}.jpg" for i in range(60)]
    issues = find_label_issues(y, probs, known, items=items, label_names=["cat", "dog"])
    assert issues == [LabelIssue("img4.jpg", "cat", "missing", 0, pytest.approx(0.98), pytest.approx(0.98)),
                      LabelIssue("img9.jpg", "dog", "wrong", 1, pytest.approx(0.03), pytest.approx(0.97))]
    path = write_label_issues(issues, tmp_path / "issues.csv")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["item", "label", "issue", "given", "probability", "score"],
                    ["img4.jpg", "cat", "missing", "0", "0.9800", "0.9800"],
                    ["img9.jpg", "dog", "wrong", "1", "0.0300", "0.9700"]]
    with pytest.raises(DataError, match="2 items and 2 label names"):
        find_label_issues(y, probs, items=items[:2], label_names=["cat", "dog"])


def test_context_probabilities_are_scikit_learns_logistic_regression_per_label_on_evidence_and_other_labels():
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    y = (rng.random((90, 3)) < [0.3, 0.5, 0.4]).astype(np.uint8)
    y[:, 1] |= y[:, 0]
    probs = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.15, y.shape), 0.01, 0.99)
    got = context_probabilities(y, probs, folds=3, seed=0, c=2.0)
    evidence = np.log(probs / (1 - probs))
    expected = np.zeros(y.shape)
    for train, held in MultilabelStratifiedKFold(n_splits=3, shuffle=True, random_state=0).split(y, y):
        for j in range(3):
            z = np.column_stack([evidence[:, j], np.delete(y, j, axis=1)])
            model = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(z[train], y[train, j])
            expected[held, j] = model.predict_proba(z[held])[:, 1]
    assert got == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ConfigError, match="c=0"):
        context_probabilities(y, probs, c=0)


def test_the_ranking_puts_the_flipped_tags_first():
    rng = np.random.default_rng(8)
    n = 300
    y = np.zeros((n, 3), dtype=np.uint8)
    y[:, 0] = rng.random(n) < 0.4
    y[:, 1] = y[:, 0]                       # "sea" always comes with "water"
    y[:, 2] = rng.random(n) < 0.3
    x = y * [6.0, 0.0, 6.0] + rng.normal(size=(n, 3))  # "sea" has no feature of its own
    noisy = y.copy()
    flipped = [(int(i), 1) for i in np.flatnonzero(y[:, 0] == 1)[:3]] + [(int(i), 1) for i in np.flatnonzero(y[:, 0] == 0)[:3]]
    for i, j in flipped:
        noisy[i, j] = 1 - noisy[i, j]
    items, names = [str(i) for i in range(n)], ["water", "sea", "sky"]
    probs = context_probabilities(noisy, out_of_fold_probabilities(x, noisy, c=1.0))
    worst = np.argsort(-np.where(noisy == 1, 1 - probs, probs), axis=None)[:6]
    assert set(zip(*map(np.ndarray.tolist, np.unravel_index(worst, y.shape)))) == set(flipped)
    ranked = find_label_issues(noisy, probs, items=items, label_names=names)
    assert {(int(i.item), names.index(i.label)) for i in ranked[:6]} == set(flipped)
    assert sorted(i.issue for i in ranked[:6]) == ["missing"] * 3 + ["wrong"] * 3
    assert min(i.score for i in ranked[:6]) > 0.9


def test_issues_are_cleanlabs_flags_and_per_class_scores():
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class

    rng = np.random.default_rng(6)
    y = (rng.random((150, 4)) < 0.35).astype(np.uint8)
    probs = np.clip(np.where(y == 1, 0.75, 0.25) + rng.normal(0, 0.25, y.shape), 0.001, 0.999)
    labels = [np.flatnonzero(row).tolist() for row in y]
    flagged = np.asarray(find_multilabel_issues_per_class(labels=labels, pred_probs=probs))
    quality = np.asarray(get_label_quality_scores_per_class(labels=labels, pred_probs=probs))
    issues = find_label_issues(y, probs, items=[str(i) for i in range(150)], label_names=list("abcd"))
    cells = [(int(i.item), "abcd".index(i.label)) for i in issues]
    assert set(cells) == set(map(tuple, np.argwhere(flagged))) and len(cells) > 10
    assert [i.score for i in issues] == pytest.approx([1 - quality[c] for c in cells])
    assert [i.score for i in issues] == sorted((i.score for i in issues), reverse=True)
