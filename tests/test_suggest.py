"""Tests of the choice of items to label next and of the label file written for them."""

import numpy as np
import pytest

from tagnet.data.labels import read_labels
from tagnet.errors import ConfigError, DataError
from tagnet.curation.suggest import suggest_items, uncertainty, write_label_requests


def test_uncertainty_is_the_mean_binary_entropy_in_bits():
    p = np.array([[0.5, 0.5], [0.0, 1.0], [0.5, 0.0], [0.25, 0.75]])
    h = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    assert uncertainty(p) == pytest.approx([1.0, 0.0, 0.5, h], abs=1e-9)


def test_first_pick_is_the_most_uncertain_and_the_second_comes_from_the_other_cluster():
    rng = np.random.default_rng(0)
    features = np.r_[np.zeros((10, 3)), np.ones((10, 3)) * 5]
    probs = np.c_[rng.uniform(0.3, 0.7, 20), rng.uniform(0.3, 0.7, 20)]
    probs[3] = 0.5  # the most uncertain item, in the first cluster
    picked = suggest_items(probs, features, n=2, seed=1)
    assert picked[0] == 3 and picked[1] >= 10
    many = suggest_items(probs, features + rng.normal(0, 0.1, features.shape), n=12, seed=4)
    assert len(set(many.tolist())) == 12


def test_seed_and_focus():
    rng = np.random.default_rng(1)
    features, probs = rng.normal(size=(200, 4)), rng.random((200, 3))
    probs[:100] = np.where(probs[:100] < 0.5, 1e-9, 1 - 1e-9)  # half the items: the model is sure
    a = suggest_items(probs, features, n=20, seed=7)
    assert np.array_equal(a, suggest_items(probs, features, n=20, seed=7))
    assert not np.array_equal(a, suggest_items(probs, features, n=20, seed=8))
    assert (suggest_items(probs, features, n=20, seed=7, focus=1.0) >= 100).all()  # sure items have ~0 weight
    assert (suggest_items(probs, features, n=40, seed=7, focus=0.0) < 100).sum() >= 10  # diversity only
    # every remaining item at distance 0: the next ones in index order
    assert suggest_items(np.full((5, 2), 0.3), np.zeros((5, 2)), n=3).tolist() == [0, 1, 2]


@pytest.mark.parametrize("options, error, message", [
    ({"n": 0}, ConfigError, "n=0"), ({"n": 6}, ConfigError, "n=6"), ({"n": 2, "focus": -1}, ConfigError, "focus=-1"),
])
def test_bad_settings(options, error, message):
    with pytest.raises(error, match=message):
        suggest_items(np.full((5, 2), 0.3), np.zeros((5, 2)), **options)
    with pytest.raises(DataError, match="same items"):
        suggest_items(np.full((5, 2), 0.3), np.zeros((4, 2)), n=1)


def test_label_requests_read_back_as_unknown_cells(tmp_path):
    path = write_label_requests(tmp_path / "to_label.csv", ["b/2.jpg", "a 1.jpg"], label_names=["sea", "beach"])
    assert path.read_text() == "image,beach,sea\nb/2.jpg,,\na 1.jpg,,\n"
    table = read_labels(path)
    assert table.items == ["b/2.jpg", "a 1.jpg"] and table.label_names == ["beach", "sea"]
    assert not table.known.any()
    with pytest.raises(DataError, match="0 items"):
        write_label_requests(tmp_path / "x.csv", [], label_names=["sea"])
