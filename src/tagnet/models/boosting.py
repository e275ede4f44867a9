"""Gradient-boosted trees as a table head: scikit-learn's HistGradientBoostingClassifier for each label, all labels'
trees written into one ONNX-ML TreeEnsembleRegressor (a target per label, a logistic output)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit
from threadpoolctl import threadpool_limits

from tagnet.models.trees import FOREST_INPUT, FOREST_OUTPUT, ONNX_ML_OPSET

LEARNING_RATE = 0.1
LEAVES = 15  # leaves per tree
FEATURE_SHARE = 0.5  # share of the features each split draws from
PROBABILITY_FLOOR = 1e-6  # a label with one class in its known rows: its constant probability, clamped into (0, 1)
# OpenMP threads of each fit and prediction: on 2 quiet cores one thread fitted MULAN scene / yeast / emotions in 1.0x /
# 0.67x / 0.55x the time of two (100 rounds, every label); 20,000+ rows x 100 features fit 1.2x slower; with another
# process on a core, two threads wait at every barrier (a 240-row fit took 0.6-2.1 s on two threads, 0.23 s on one).
# benchmarks/RESULTS.md, "Gradient-boosted trees on one thread".
THREADS = 1


@dataclass
class BoostedTrees:
    """One fitted HistGradientBoostingClassifier per label (None where a label's known rows hold one class) and each
    label's raw start score (the classifier's baseline, or the logit of that one class's clamped rate)."""

    models: list
    base: np.ndarray


def fit_boosted(x: np.ndarray, targets: np.ndarray, known: np.ndarray, *, rounds: int, seed: int) -> BoostedTrees:
    """A classifier of `rounds` trees (LEARNING_RATE, LEAVES leaves, FEATURE_SHARE of the features per split, no early
    stopping) for each label on its known rows of `x`, on THREADS OpenMP threads. A Python loop over labels around fits
    in compiled code: the selection keeps it to tables of few rows x labels."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rows = np.asarray(x, np.float32)
    models, base = [], np.zeros(targets.shape[1])
    with threadpool_limits(limits=THREADS, user_api="openmp"):
        for j in range(targets.shape[1]):
            y = targets[known[:, j], j] > 0
            if y.all() or not y.any():
                models.append(None)
                rate = np.clip(float(y.mean()) if len(y) else 0.0, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
                base[j] = logit(rate)
                continue
            model = HistGradientBoostingClassifier(max_iter=rounds, learning_rate=LEARNING_RATE, max_leaf_nodes=LEAVES,
                                                   max_features=FEATURE_SHARE, early_stopping=False,
                                                   random_state=seed + j)
            models.append(model.fit(rows[known[:, j]], y))
            base[j] = float(np.ravel(model._baseline_prediction)[0])
    return BoostedTrees(models, base)


def boosted_probabilities(boosted: BoostedTrees, x: np.ndarray) -> np.ndarray:
    """(rows, labels) float32 probabilities of `boosted` on rows `x`: the logistic of each label's raw score."""
    rows = np.asarray(x, np.float32)
    raw = np.tile(boosted.base, (len(rows), 1))
    with threadpool_limits(limits=THREADS, user_api="openmp"):
        for j, model in enumerate(boosted.models):
            if model is not None:
                raw[:, j] = model.decision_function(rows)
    return expit(raw).astype(np.float32)


def _float32_at_most(values: np.ndarray) -> np.ndarray:
    """The largest float32 at most each float64 value: for a float32 x, x <= value exactly when x <= this."""
    rounded = values.astype(np.float32)
    return np.where(rounded.astype(np.float64) > values, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def _tree_attributes(boosted: BoostedTrees) -> dict[str, list]:
    """The TreeEnsembleRegressor attributes of every label's trees: node arrays, leaves as weights of their label. They
    are read from scikit-learn's own prediction arrays (`_predictors`, `_baseline_prediction`: private names, stable
    since 1.0); a change there fails the 1e-4 check against scikit-learn's probabilities when a head is made."""
    out: dict[str, list] = {key: [] for key in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values",
                                                "nodes_modes", "nodes_truenodeids", "nodes_falsenodeids",
                                                "target_treeids", "target_nodeids", "target_ids", "target_weights")}
    tree = 0
    for j, model in enumerate(boosted.models):
        if model is None:  # one leaf holding the constant score (ONNX Runtime adds no start score to a treeless target)
            for key, value in (("nodes_featureids", 0), ("nodes_values", 0.0), ("nodes_modes", "LEAF"),
                               ("nodes_truenodeids", 0), ("nodes_falsenodeids", 0), ("target_nodeids", 0),
                               ("nodes_treeids", tree), ("nodes_nodeids", 0), ("target_treeids", tree),
                               ("target_ids", j), ("target_weights", float(boosted.base[j]))):
                out[key].append(value)
            tree += 1
        for (predictor,) in ([] if model is None else model._predictors):
            nodes = predictor.nodes
            count, leaf = len(nodes), nodes["is_leaf"].astype(bool)
            out["nodes_treeids"] += [tree] * count
            out["nodes_nodeids"] += list(range(count))
            out["nodes_featureids"] += np.where(leaf, 0, nodes["feature_idx"]).tolist()
            out["nodes_values"] += np.where(leaf, 0, _float32_at_most(nodes["num_threshold"])).tolist()
            out["nodes_modes"] += ["LEAF" if is_leaf else "BRANCH_LEQ" for is_leaf in leaf]
            out["nodes_truenodeids"] += np.where(leaf, 0, nodes["left"]).tolist()
            out["nodes_falsenodeids"] += np.where(leaf, 0, nodes["right"]).tolist()
            at = np.flatnonzero(leaf)
            out["target_treeids"] += [tree] * len(at)
            out["target_nodeids"] += at.tolist()
            out["target_ids"] += [j] * len(at)
            out["target_weights"] += nodes["value"][at].tolist()
            tree += 1
    return out


def boosted_onnx(boosted: BoostedTrees, num_features: int) -> bytes:
    """`boosted` as a serialised ONNX model: float32 FOREST_INPUT (batch, num_features) -> FOREST_OUTPUT (batch,
    labels), one ai.onnx.ml TreeEnsembleRegressor (every label's trees, a start score per label, logistic output)."""
    from onnx import TensorProto, helper

    labels = len(boosted.models)
    attributes = _tree_attributes(boosted)
    base = np.where([model is None for model in boosted.models], 0.0, boosted.base)  # a constant label's is its leaf
    node = helper.make_node("TreeEnsembleRegressor", [FOREST_INPUT], [FOREST_OUTPUT], domain="ai.onnx.ml",
                            n_targets=labels, base_values=base.tolist(), post_transform="LOGISTIC",
                            aggregate_function="SUM", **attributes)
    graph = helper.make_graph([node], "tagnet_boosted",
                              [helper.make_tensor_value_info(FOREST_INPUT, TensorProto.FLOAT, [None, num_features])],
                              [helper.make_tensor_value_info(FOREST_OUTPUT, TensorProto.FLOAT, [None, labels])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", ONNX_ML_OPSET)])
    return model.SerializeToString()
