"""Tests of temperature and Platt scaling, expected calibration error and reliability-diagram data."""

import json

import numpy as np
import pytest

from tagnet.decisions.calibration import (PLATT_CLIP, TemperatureScaling, ece, fit_platt, fit_temperature, platt_threshold,
                                         reliability)
from tagnet.errors import ArtifactError, ConfigError, DataError


def test_ece_and_reliability_hand_case():
    y = np.array([[0], [1], [1], [1], [0]])
    p = np.array([[0.1], [0.1], [0.9], [0.9], [0.5]])
    # bins [0, 0.5) and [0.5, 1]: {0.1, 0.1} mean 0.1, 1 of 2 positive; {0.9, 0.9, 0.5} mean 0.7667, 2 of 3
    assert ece(y, p, bins=2) == pytest.approx([2 / 5 * 0.4 + 3 / 5 * abs(2.3 / 3 - 2 / 3)])
    r = reliability(y, p, bins=2)
    assert r.edges.tolist() == [0.0, 0.5, 1.0] and r.count.tolist() == [[2, 3]]
    assert r.mean_probability == pytest.approx(np.array([[0.1, 2.3 / 3]]))
    assert r.positive_rate == pytest.approx(np.array([[0.5, 2 / 3]]))
    data = json.loads(json.dumps(reliability(y, p, bins=4).to_dict()))
    assert data["count"] == [[2, 0, 1, 2]] and data["mean_probability"][0][1] is None
    assert data["ece"] == pytest.approx([2 / 5 * 0.4 + 1 / 5 * 0.5 + 2 / 5 * 0.1])


def test_ece_skips_unknown_cells_and_uses_fifteen_bins():
    rng = np.random.default_rng(0)
    p = rng.random((200, 2))
    y = (rng.random((200, 2)) < p).astype(np.uint8)
    known = rng.random((200, 2)) < 0.7
    manual = []
    for j in range(2):
        pj, yj = p[known[:, j], j], y[known[:, j], j]
        b = np.minimum((pj * 15).astype(int), 14)
        manual.append(sum((b == k).sum() / len(pj) * abs(pj[b == k].mean() - yj[b == k].mean()) for k in range(15) if (b == k).any()))
    assert ece(y, p, known) == pytest.approx(manual)
    assert np.isnan(ece(y, p, np.zeros_like(known))).all()


def test_temperature_undoes_overconfidence_and_minimises_the_nll():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (4000, 2))
    y = rng.random(z.shape) < 1 / (1 + np.exp(-z))
    probs = 1 / (1 + np.exp(-z * [3.0, 0.5]))  # label 0 overconfident x3, label 1 underconfident x0.5
    scaling = fit_temperature(y, probs)
    assert scaling.temperatures == pytest.approx([3.0, 0.5], rel=0.1)
    for j in range(2):  # the NLL on a fine grid of temperatures is lowest at the fitted one
        grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
        logit = np.log(probs[:, j] / (1 - probs[:, j]))
        nll = [np.mean(np.logaddexp(0, -np.where(y[:, j], logit, -logit) / t)) for t in grid]
        assert scaling.temperatures[j] == pytest.approx(grid[int(np.argmin(nll))], rel=2e-3)
    calibrated = scaling.apply(probs)
    assert (ece(y, calibrated) < ece(y, probs) / 3).all()
    assert calibrated == pytest.approx(1 / (1 + np.exp(-z * [3.0, 0.5] / scaling.temperatures)))


def test_labels_without_both_classes_keep_temperature_one_and_state_round_trips():
    y = np.array([[1, 0], [1, 0], [0, 0], [1, 0]])
    p = np.array([[0.9, 0.2], [0.6, 0.1], [0.3, 0.3], [0.8, 0.01]])
    scaling = fit_temperature(y, p)
    assert scaling.temperatures[1] == 1.0
    assert TemperatureScaling.from_dict(json.loads(json.dumps(scaling.to_dict())), num_labels=2) == scaling
    assert fit_temperature(y, p, known=np.array([[1, 1], [1, 1], [0, 1], [1, 1]], bool)).temperatures == [1.0, 1.0]


@pytest.mark.parametrize("data, message", [
    ({"method": "platt", "temperatures": [1.0]}, "expected"), ({"method": "temperature", "temperatures": [0.0]}, r"temperatures\[0\]=0.0"),
    ({"method": "temperature", "temperatures": ["a"]}, r"temperatures\[0\]='a'"),
    ({"method": "temperature", "temperatures": [1.0, 2.0]}, "2 temperatures for 1 labels"),
])
def test_bad_state_is_rejected(data, message):
    with pytest.raises(ArtifactError, match=message):
        TemperatureScaling.from_dict(data, num_labels=1, source="run/tagnet.json")


def test_bad_inputs_are_rejected():
    with pytest.raises(ConfigError, match="bins=0"):
        ece(np.zeros((2, 1)), np.zeros((2, 1)), bins=0)
    with pytest.raises(DataError, match=r"probability \[1, 0\] = 1.5"):
        fit_temperature(np.zeros((2, 1)), np.array([[0.5], [1.5]]))
    with pytest.raises(ConfigError, match="expected"):
        TemperatureScaling([1.0]).apply(np.zeros((2, 3)))


def test_platt_threshold_is_where_scikit_learns_platt_map_crosses_one_half():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    shrunk = rng.random((600, 4)) * 0.8  # scores pulled below the rate they stand for, as a forest's vote shares are
    y = (rng.random(shrunk.shape) < shrunk * 1.25).astype(int)
    known = rng.random(y.shape) < 0.9
    p = np.clip(shrunk[known], PLATT_CLIP, 1 - PLATT_CLIP)
    platt = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(np.log(p / (1 - p))[:, None], y[known])
    expected = 1 / (1 + np.exp(platt.intercept_[0] / platt.coef_[0, 0]))
    assert platt_threshold(y, shrunk, known) == pytest.approx(expected, abs=1e-6)
    assert 0.35 < expected < 0.45  # calibrated p = 1.25 x score crosses 0.5 at a score of 0.4
    # calibrated scores cross at 0.5; one class only, or scores that rank backwards: 0.5
    calibrated = rng.random((4000, 1))
    assert platt_threshold(rng.random(calibrated.shape) < calibrated, calibrated) == pytest.approx(0.5, abs=0.02)
    assert platt_threshold(np.zeros((5, 2)), rng.random((5, 2))) == 0.5
    assert platt_threshold(np.array([[1], [1], [0], [0]]), np.array([[0.1], [0.2], [0.8], [0.9]])) == 0.5


def test_platt_scaling_per_label_is_scikit_learns_fit_to_platts_targets():
    """fit_platt: each label's slope and intercept are the maximum-likelihood logistic fit to Platt's targets
    ((N+ + 1) / (N+ + 2), 1 / (N- + 2)), as scikit-learn fits them from each cell weighted toward both classes; a label
    of one class, or whose scores rank backwards, keeps the identity; apply maps and keeps every label's ranking."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    scores = rng.random((400, 3))
    truth = np.c_[rng.random(400) < scores[:, 0] ** 3, rng.random(400) < 0.2 + 0.1 * scores[:, 1], np.zeros(400)]
    scores[:, 2] = rng.random(400)  # label 2 has no positive
    known = rng.random(truth.shape) < 0.9
    fitted = fit_platt(truth, scores, known)
    for j in range(2):
        y, z = truth[known[:, j], j].astype(bool), np.log(scores[known[:, j], j] / (1 - scores[known[:, j], j]))
        t = np.where(y, (y.sum() + 1) / (y.sum() + 2), 1 / ((~y).sum() + 2))
        reference = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(
            np.r_[z, z][:, None], np.r_[np.ones_like(z), np.zeros_like(z)], sample_weight=np.r_[t, 1 - t])
        assert fitted.slopes[j] == pytest.approx(reference.coef_[0, 0], abs=1e-5)
        assert fitted.intercepts[j] == pytest.approx(reference.intercept_[0], abs=1e-5)
    assert fitted.slopes[0] > 1.1 and (fitted.slopes[2], fitted.intercepts[2]) == (1.0, 0.0)
    backwards = fit_platt(np.array([[1], [1], [0], [0]]), np.array([[0.1], [0.2], [0.8], [0.9]]))
    assert (backwards.slopes, backwards.intercepts) == ([1.0], [0.0])
    mapped = fitted.apply(scores)
    assert (np.argsort(mapped, axis=0, kind="stable") == np.argsort(scores, axis=0, kind="stable")).all()
    assert ece(truth, mapped, known).mean() < ece(truth, scores, known).mean()
    with pytest.raises(ConfigError, match="expected"):
        fitted.apply(scores[:, :2])


def test_a_logit_map_folded_into_a_heads_last_layer_is_what_the_head_then_outputs():
    """fold_logit_map: the head's logit z_j becomes a_j z_j + b_j in its last Linear; a head of another shape is
    left as it is."""
    import torch
    from torch import nn

    from tagnet.models.base import fold_logit_map

    torch.manual_seed(0)
    head, x = nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 3)).eval(), torch.randn(10, 4)
    before = head(x).detach()
    assert fold_logit_map(head, [2.0, 0.5, 1.0], [0.3, -1.0, 0.0])
    torch.testing.assert_close(head(x).detach(), before * torch.tensor([2.0, 0.5, 1.0]) + torch.tensor([0.3, -1.0, 0.0]))
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    state = {k: v.clone() for k, v in other.state_dict().items()}
    assert not fold_logit_map(other, [2.0] * 3, [0.0] * 3) and not fold_logit_map(head, [2.0] * 2, [0.0] * 2)
    assert all(torch.equal(state[k], v) for k, v in other.state_dict().items())
