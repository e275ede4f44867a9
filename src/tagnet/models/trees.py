"""The random-forest head of feature tables: one multi-output forest for every label, stored and run as ONNX-ML."""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import nn

from tagnet.errors import ConfigError

ONNX_ML_OPSET = 3  # ai.onnx.ml opset of the forest's TreeEnsembleRegressor
FOREST_INPUT, FOREST_OUTPUT = "forest_input", "forest_output"
PARITY_TOLERANCE = 1e-4  # max |ONNX Runtime - scikit-learn| over the probabilities of a fitted forest
PROBABILITY_EPS = 1e-7  # the head's logit is of the probability clamped to [eps, 1 - eps]
PACKAGES = ("sklearn", "skl2onnx", "onnx", "onnxruntime")


def missing_packages() -> list[str]:
    """The packages a forest head needs (skl2onnx, onnx, onnxruntime) that are not installed."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def fit_forest(x: np.ndarray, targets: np.ndarray, known: np.ndarray, *, trees: int, seed: int):
    """One multi-output random forest (scikit-learn RandomForestRegressor, sqrt(features) tried per split) on rows `x`
    for every label at once: each leaf holds the positive rate of every label among its rows, so a label's
    probability is the trees' average rate, as a classification forest's would be (squared error on 0/1 targets
    splits as the Gini impurity does). An unknown target counts as negative."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=trees, max_features="sqrt", random_state=seed, n_jobs=1)
    y = np.where(known, targets, 0).astype(np.float32)
    return forest.fit(np.asarray(x, np.float32), y[:, 0] if y.shape[1] == 1 else y)  # one label: scikit-learn's 1-D y


def forest_probabilities(forest, x: np.ndarray) -> np.ndarray:
    """(rows, labels) probabilities of scikit-learn's `forest` on rows `x` (float32)."""
    return forest.predict(np.asarray(x, np.float32)).reshape(len(x), -1).astype(np.float32)


def forest_onnx(forest, num_features: int) -> bytes:
    """The forest as a serialised ONNX model (skl2onnx: one ai.onnx.ml TreeEnsembleRegressor): float32 FOREST_INPUT
    (batch, num_features) -> FOREST_OUTPUT (batch, labels)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    proto = convert_sklearn(forest, initial_types=[(FOREST_INPUT, FloatTensorType([None, num_features]))],
                            target_opset={"": 17, "ai.onnx.ml": ONNX_ML_OPSET},
                            final_types=[(FOREST_OUTPUT, FloatTensorType([None, forest.n_outputs_]))])
    return proto.SerializeToString()


class ForestHead(nn.Module):
    """A label head holding a tree ensemble (the random forest, or gradient-boosted trees: models.boosting) as ONNX
    bytes (a uint8 buffer, so the artifact's safetensors file carries it and nothing executes code on load), run by
    ONNX Runtime on the CPU: logits out, like every head (the logit of each label's probability, clamped to
    [PROBABILITY_EPS, 1 - PROBABILITY_EPS])."""

    def __init__(self, model: bytes | int) -> None:
        super().__init__()
        data = torch.zeros(model, dtype=torch.uint8) if isinstance(model, int) else \
            torch.frombuffer(bytearray(model), dtype=torch.uint8)
        self.register_buffer("onnx", data)
        self._session = None
        self._session_of: tuple[int, int] | None = None

    @property
    def spec(self) -> dict[str, object]:
        """What rebuilds the head: its kind and the size of its ONNX model."""
        return {"head": "forest", "forest_bytes": int(self.onnx.numel())}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_session"], state["_session_of"] = None, None  # an ONNX Runtime session is not copied
        return state

    def session(self):
        """The ONNX Runtime session of the buffer's model (made again when the buffer is replaced or loaded)."""
        key = (self.onnx.data_ptr(), int(self.onnx.numel()))
        if self._session is None or self._session_of != key:
            if missing_packages():
                raise ConfigError(f"a forest head needs {', '.join(missing_packages())}; expected them installed: "
                                  "pip install 'tagnet[trees]'")
            import onnxruntime

            from tagnet.inference.runtime import ort_session_options

            self._session = onnxruntime.InferenceSession(self.onnx.cpu().numpy().tobytes(), ort_session_options(),
                                                         providers=["CPUExecutionProvider"])
            self._session_of = key
        return self._session

    def probabilities(self, features: torch.Tensor) -> np.ndarray:
        """(batch, labels) float32 probabilities of standardised rows `features`."""
        rows = np.ascontiguousarray(features.detach().float().cpu().numpy())
        return self.session().run([FOREST_OUTPUT], {FOREST_INPUT: rows})[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        probs = torch.from_numpy(self.probabilities(features)).to(features.device)
        return torch.logit(probs, eps=PROBABILITY_EPS)


def forest_graph(head: ForestHead, *, mean: np.ndarray, std: np.ndarray, opset: int, input_name: str,
                 output_name: str):
    """The single exported graph of a forest model: raw float64 rows `input_name` standardised in float64 ((x - mean)
    / std, NaN -> 0, then float32: bit for bit tagnet.data.feature_table.standardize, so no value crosses a split
    threshold that it did not cross in training) into the forest's ONNX-ML trees, probabilities `output_name` out
    (an onnx.ModelProto, without metadata)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    forest = onnx.load_from_string(head.onnx.cpu().numpy().tobytes())
    count = len(mean)
    nodes = [helper.make_node("Sub", [input_name, "tagnet_mean"], ["tagnet_centred"]),
             helper.make_node("Div", ["tagnet_centred", "tagnet_std"], ["tagnet_scaled"]),
             helper.make_node("IsNaN", ["tagnet_scaled"], ["tagnet_missing"]),
             helper.make_node("Where", ["tagnet_missing", "tagnet_zero", "tagnet_scaled"], ["tagnet_standard"]),
             helper.make_node("Cast", ["tagnet_standard"], [FOREST_INPUT], to=TensorProto.FLOAT)]
    constants = [numpy_helper.from_array(np.asarray(mean, np.float64), "tagnet_mean"),
                 numpy_helper.from_array(np.asarray(std, np.float64), "tagnet_std"),
                 numpy_helper.from_array(np.zeros(1, np.float64), "tagnet_zero")]
    trees = [node for node in forest.graph.node]
    for node in trees:  # the forest's output is the graph's
        node.output[:] = [output_name if name == FOREST_OUTPUT else name for name in node.output]
    labels = forest.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    graph = helper.make_graph(
        nodes + trees, "tagnet_forest",
        [helper.make_tensor_value_info(input_name, TensorProto.DOUBLE, ["batch", count])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", labels])],
        initializer=constants + list(forest.graph.initializer))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid("ai.onnx.ml", ONNX_ML_OPSET)],
                             ir_version=forest.ir_version)
