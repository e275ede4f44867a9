"""Sparse tables stay sparse until the batch: sparse ARFF read as CSR, scaling, the joint logistic solver and an
end-to-end train / predict on a sparse ARFF file written the way MULAN writes them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sklearn.metrics import f1_score

from tagnet.config.settings import TrainConfig
from tagnet.config.source import DataSource
from tagnet.data.feature_table import fit_scaling, read_feature_table, standardize
from tagnet.engine.process import one_torch_thread
from tagnet.engine.linear import fit_logistic
from tagnet.data.label_table import LabelTable
from tagnet.inference.predictor import Predictor
from tagnet.modalities.base import HeadInputs
from tagnet.modalities.tabular import TabularModality
from tagnet.training.trainer import train as train_run

XML = """<?xml version="1.0" encoding="utf-8"?>
<labels xmlns="http://mulan.sourceforge.net/labels">
<label name="red"></label>
<label name="round"></label>
<label name="sweet"></label>
</labels>
"""


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 word features (30 of them, a few on per row) and three labels each switched on by its own words."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 30)) < 0.08).astype(np.float64)
    y = np.column_stack([x[:, 0] + x[:, 1] > 0, x[:, 2] + x[:, 3] > 0, x[:, 4] + x[:, 5] + x[:, 6] > 0]).astype(int)
    return x, y


def _write_arff(path, x: np.ndarray, y: np.ndarray, *, sparse: bool, missing: tuple[int, int] | None = None):
    """MULAN's layout: numeric word attributes, then {0,1} label attributes; sparse rows list the nonzero cells as
    {index value, ...} in ascending index order (Weka's SparseInstance), "?" for a missing value."""
    head = ["@relation words"] + [f"@attribute w{j} numeric" for j in range(x.shape[1])]
    head += [f"@attribute {name} {{0,1}}" for name in ("red", "round", "sweet")] + ["@data"]
    cells = np.hstack([x, y]).astype(object)
    if missing is not None:
        cells[missing] = "?"
    lines = []
    for row in cells:
        if sparse:
            lines.append("{" + ",".join(f"{j} {v if v == '?' else f'{v:g}'}" for j, v in enumerate(row) if v != 0) + "}")
        else:
            lines.append(",".join(v if v == "?" else f"{v:g}" for v in row))
    path.write_text("\n".join(head + lines) + "\n", encoding="utf-8")
    path.with_name("words.xml").write_text(XML, encoding="utf-8")
    return path


def test_sparse_arff_reads_as_csr_equal_to_the_dense_read(tmp_path):
    x, y = _rows(40, 0)
    x[3, 7] = 2.5  # a count, not only 0/1
    for kind in ("dense", "sparse"):
        (tmp_path / kind).mkdir()
    dense = read_feature_table(_write_arff(tmp_path / "dense" / "words-train.arff", x, y, sparse=False, missing=(5, 31)))
    path = _write_arff(tmp_path / "sparse" / "words-train.arff", x, y, sparse=True, missing=(5, 31))
    found = read_feature_table(path, sparse=True)
    assert sp.isspmatrix_csr(found.features) and found.features.dtype == np.float32
    assert found.features.nnz == np.count_nonzero(x)
    np.testing.assert_array_equal(found.features.toarray(), dense.features)
    np.testing.assert_array_equal(read_feature_table(path).features, dense.features)  # dense unless asked
    assert found.labels.label_names == dense.labels.label_names == ["red", "round", "sweet"]
    np.testing.assert_array_equal(found.labels.targets, dense.labels.targets)
    np.testing.assert_array_equal(found.labels.known, dense.labels.known)
    assert not found.labels.known[5, 1] and found.labels.targets.dtype == np.uint8


def test_sparse_scaling_and_standardize_equal_the_dense_ones():
    rng = np.random.default_rng(1)
    x = np.where(rng.random((60, 6)) < 0.3, rng.random((60, 6)) * 4, 0.0)
    x[2, 1], x[:, 5] = np.nan, 0.0
    mean, std = fit_scaling(x)
    for got, expected in zip(fit_scaling(sp.csr_matrix(x)), (mean, std)):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert (mean == 0).all()  # nonnegative, mostly zero columns are divided by their largest value, not centred
    scaled = standardize(sp.csr_matrix(x), mean, std)
    assert sp.isspmatrix_csr(scaled) and scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled.toarray(), standardize(x, mean, std))
    x[:, 4] = np.where(np.arange(60) % 4 == 0, 0.0, 2.0)  # a common word: centred when dense, uncentred when sparse
    dense_mean, _ = fit_scaling(x)
    mean, std = fit_scaling(sp.csr_matrix(x))
    assert dense_mean[4] == pytest.approx(1.5) and mean[4] == 0 and std[4] == 2.0
    assert sp.isspmatrix_csr(standardize(sp.csr_matrix(x), mean, std))
    x[:, 0] = rng.normal(size=60)  # a column with negative values is centred: the rows come back dense
    mean, std = fit_scaling(x)
    assert fit_scaling(sp.csr_matrix(x))[0][0] == pytest.approx(mean[0], rel=1e-12)
    np.testing.assert_allclose(standardize(sp.csr_matrix(x), mean, std), standardize(x, mean, std), rtol=1e-6)


def test_joint_logistic_on_csr_rows_equals_the_dense_fit():
    rng = np.random.default_rng(2)
    x = np.where(rng.random((150, 10)) < 0.3, rng.random((150, 10)), 0.0).astype(np.float32)  # dense product above 1/8
    targets = (x[:, :3] @ rng.normal(size=(3, 4)) + 0.3 * rng.normal(size=(150, 4)) > 0).astype(np.uint8)
    known = rng.random(targets.shape) > 0.1
    sets = [np.arange(0, 100), np.arange(50, 150)]
    with one_torch_thread():  # a tiny problem: more threads only wait on each other on a busy machine
        dense = fit_logistic(x, targets, known, Cs=(0.1, 1.0), row_sets=sets, tol=1e-6)
        csr = fit_logistic(sp.csr_matrix(x), targets, known, Cs=(0.1, 1.0), row_sets=sets, tol=1e-6)
    for path_dense, path_csr in zip(dense, csr):
        for (coef_d, intercept_d), (coef_s, intercept_s) in zip(path_dense, path_csr):
            assert np.abs(coef_d).max() > 0.1
            # the same solution to the solver's float32 resolution (the elementwise loss's rounding can differ
            # between the two products' outputs); both are ~1e-3 from scikit-learn's fit at tol 1e-12
            np.testing.assert_allclose(coef_s, coef_d, atol=5e-5)
            np.testing.assert_allclose(intercept_s, intercept_d, atol=5e-5)


def test_sparse_head_inputs_batch_dense_rows():
    x, y = _rows(50, 3)
    labels = LabelTable([str(i) for i in range(50)], ["a", "b", "c"], y.astype(np.uint8), np.ones(y.shape, bool))
    inputs = HeadInputs(sp.csr_matrix(x, dtype=np.float32))
    rows = np.arange(10, 40)
    batches = list(inputs.loader(labels, rows, batch_size=8, train=False))
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), x[rows])
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), y[rows])
    assert sp.issparse(inputs.array()) and np.array_equal(inputs.array(dense=True), x)


@pytest.mark.parametrize("select", ["linear", "mlp"])
def test_sparse_arff_trains_and_predicts_like_the_dense_file(tmp_path, select):
    x, y = _rows(240, 4)
    x_test, y_test = _rows(60, 5)
    runs, probs = {}, {}
    for kind in ("sparse", "dense"):
        (tmp_path / kind).mkdir()
        train = _write_arff(tmp_path / kind / "words-train.arff", x, y, sparse=kind == "sparse")
        test = _write_arff(tmp_path / kind / "words-test.arff", x_test, y_test, sparse=kind == "sparse")
        config = TrainConfig(epochs=30, batch_size=32, lr=2e-2, head_hidden=16, patience=30, select=select, cv_folds=3)
        runs[kind] = train_run(train, modality="tabular", out_dir=tmp_path / kind / "run", config=config, progress=False)
        predictor = Predictor(runs[kind].run_dir)
        sources, rows, errors = predictor.modality.read_unlabeled([test], predictor)  # `tagnet predict RUN test.arff`
        assert errors == {} and sources[0] == f"{test}:1"
        probs[kind] = predictor.predict_proba(rows)
    data = TabularModality().read(DataSource(tmp_path / "sparse" / "words-train.arff"))
    assert sp.issparse(data.inputs)  # read sparse, kept sparse up to the head's inputs
    state = Predictor(runs["sparse"].run_dir).artifact.state
    assert sp.issparse(TabularModality().head_inputs(None, data, state, cache_dir=tmp_path, progress=False).values)
    np.testing.assert_allclose(probs["sparse"], probs["dense"], atol=1e-3)  # float sums in another order
    assert runs["sparse"].report.micro_f1 == pytest.approx(runs["dense"].report.micro_f1, abs=1e-6)
    truth = y_test.astype(bool)
    micro = f1_score(truth, probs["sparse"] >= 0.5, average="micro")
    assert micro > 0.8


def test_a_small_sparse_table_has_the_forest_among_its_candidates(tmp_path):
    """A word rule no linear head finds (red = w0 xor w1) in a sparse ARFF file: the forest and the boosted trees
    compete, take the rows dense, one of them wins the CV, and the run predicts the sparse test file as the same run on
    the dense file does."""
    rng = np.random.default_rng(6)
    x = (rng.random((300, 30)) < 0.3).astype(np.float64)
    y = np.column_stack([(x[:, 0] != x[:, 1]), x[:, 2] > 0, x[:, 3] + x[:, 4] > 0]).astype(int)
    runs, probs = {}, {}
    for kind in ("sparse", "dense"):
        (tmp_path / kind).mkdir()
        train = _write_arff(tmp_path / kind / "words-train.arff", x[:240], y[:240], sparse=kind == "sparse")
        test = _write_arff(tmp_path / kind / "words-test.arff", x[240:], y[240:], sparse=kind == "sparse")
        config = TrainConfig(epochs=5, batch_size=32, head_hidden=8, cv_folds=3, forest_trees=30)
        runs[kind] = train_run(train, modality="tabular", out_dir=tmp_path / kind / "run", config=config, progress=False)
        predictor = Predictor(runs[kind].run_dir)
        probs[kind] = predictor.predict_proba(predictor.modality.read_unlabeled([test], predictor)[1])
    for run in runs.values():
        selection = json.loads((run.run_dir / "metrics.json").read_text())["selection"]
        assert {"forest", "boosted"} <= set(selection["candidates"]) and selection["choice"] in ("forest", "boosted")
    np.testing.assert_allclose(probs["sparse"], probs["dense"], atol=1e-6)
    assert f1_score(y[240:], probs["sparse"] >= 0.5, average="micro") > 0.9
