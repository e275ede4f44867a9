"""Tests of the multi-label losses against explicit formulas on tiny tensors."""

import numpy as np
import pytest
import torch

from tagnet.config.settings import TrainConfig
from tagnet.errors import ConfigError
from tagnet.training.losses import make_loss

LOGITS = np.array([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]])
TARGETS = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
FREQ = np.array([0.25, 0.5, 0.001])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _loss(name, *, targets=TARGETS, known=None, **settings):
    module = make_loss(TrainConfig(loss=name, **settings), label_frequency=FREQ)
    mask = None if known is None else torch.tensor(known)
    return module(torch.tensor(LOGITS), torch.tensor(targets), mask).item()


def _bce(t, w=1.0):
    p = _sigmoid(LOGITS)
    return -(w * t * np.log(p) + (1 - t) * np.log(1 - p))


def test_bce():
    assert _loss("bce") == pytest.approx(_bce(TARGETS).mean())


def test_label_smoothing_moves_targets_towards_half():
    smoothed = TARGETS * 0.8 + 0.1
    assert _loss("bce", label_smoothing=0.2) == pytest.approx(_bce(smoothed).mean())


def test_weighted_bce_uses_negatives_over_positives_clamped():
    # 0.75/0.25 = 3; 0.5/0.5 = 1; 0.999/0.001 = 999 -> clamped to 100
    weights = np.array([3.0, 1.0, 100.0])
    assert _loss("weighted_bce") == pytest.approx(_bce(TARGETS, weights).mean())


def test_focal():
    p = _sigmoid(LOGITS)
    p_t = np.where(TARGETS == 1, p, 1 - p)
    expected = -((1 - p_t) ** 1.5 * np.log(p_t)).mean()
    assert _loss("focal", focal_gamma=1.5) == pytest.approx(expected)
    assert _loss("focal", focal_gamma=0.0) == pytest.approx(_bce(TARGETS).mean())


@pytest.mark.parametrize("clip", [0.05, 0.0])
def test_asymmetric_loss(clip):
    p = _sigmoid(LOGITS)
    p_m = np.maximum(p - clip, 0)
    positive = (1 - p) ** 1.0 * np.log(p)
    negative = p_m ** 4.0 * np.log(1 - p_m)
    expected = -(TARGETS * positive + (1 - TARGETS) * negative).mean()
    got = _loss("asl", asl_gamma_neg=4.0, asl_gamma_pos=1.0, asl_clip=clip)
    assert got == pytest.approx(expected)


def test_asymmetric_loss_without_focusing_or_clip_is_bce():
    assert _loss("asl", asl_gamma_neg=0.0, asl_gamma_pos=0.0, asl_clip=0.0) == pytest.approx(_bce(TARGETS).mean())


@pytest.mark.parametrize("name", ["bce", "weighted_bce", "focal", "asl"])
def test_masked_cells_do_not_count_and_get_no_gradient(name):
    known = np.array([[True, False, True], [False, True, True]])
    base = _loss(name, known=known)
    changed = TARGETS.copy()
    changed[~known] = 1 - changed[~known]
    assert _loss(name, targets=changed, known=known) == pytest.approx(base)
    # the loss is the mean of the known cells' losses (each measured with a one-cell mask)
    per_cell = []
    for i, j in zip(*np.nonzero(known)):
        single = np.zeros_like(known)
        single[i, j] = True
        per_cell.append(_loss(name, known=single))
    assert base == pytest.approx(np.mean(per_cell))
    assert _loss(name, known=np.ones_like(known)) == pytest.approx(_loss(name))

    module = make_loss(TrainConfig(loss=name), label_frequency=FREQ)

    logits = torch.tensor(LOGITS, requires_grad=True)
    module(logits, torch.tensor(TARGETS), torch.tensor(known)).backward()
    grad = logits.grad.numpy()
    assert np.isfinite(grad).all()
    assert (grad[~known] == 0).all() and (grad[known] != 0).all()


def test_nothing_known_gives_zero():
    module = make_loss(TrainConfig(loss="bce"), label_frequency=FREQ)
    loss = module(torch.tensor(LOGITS), torch.tensor(TARGETS), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0


def test_bad_settings():
    with pytest.raises(ConfigError, match="loss='softmax'"):
        make_loss(TrainConfig(loss="softmax"), label_frequency=FREQ)
    with pytest.raises(ConfigError, match="label_smoothing"):
        make_loss(TrainConfig(label_smoothing=1.0), label_frequency=FREQ)
    with pytest.raises(ConfigError, match="label_frequency"):
        make_loss(TrainConfig(), label_frequency=np.array([1.5]))


@pytest.mark.parametrize("name, settings", [("focal", {"focal_gamma": 0.5}),
                                            ("asl", {"asl_gamma_pos": 0.5, "asl_gamma_neg": 0.5, "asl_clip": 0.1}),
                                            ("asl", {"asl_gamma_pos": 0.5, "asl_gamma_neg": 0.5, "asl_clip": 0.0})])
def test_fractional_focusing_keeps_gradients_finite_when_sigmoid_saturates(name, settings):
    module = make_loss(TrainConfig(loss=name, **settings), label_frequency=np.array([0.5, 0.5]))
    logits = torch.tensor([[40.0, -120.0], [-40.0, 120.0]], requires_grad=True)  # sigmoid is exactly 0 or 1
    module(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]])).backward()
    assert torch.isfinite(logits.grad).all()
