"""Feature tables (ARFF, CSV): rows scaled by the training rows' statistics (fit_scaling), an MLP head on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from tagnet.config.settings import TrainConfig
from tagnet.data.feature_table import (TABULAR_OPTIONS, fit_scaling, read_feature_rows, read_feature_table,
                                 standardize, table_read_options)
from tagnet.errors import ArtifactError, DataError, TagnetError
from tagnet.models import TagnetModel, create_model
from tagnet.models.trees import ForestHead
from tagnet.modalities.base import HeadInputs, LabeledInputs, Modality, check_items
from tagnet.modalities.codecs import TableCodec
from tagnet.modalities.onnx_specs import TableOnnx
from tagnet.modalities.specs import TABULAR

LABEL_CHOOSING_OPTIONS = ("label_columns", "label_count", "labels_xml")


class TabularModality(Modality):
    """Rows of numeric features: an ARFF file, or a CSV table with --tabular / --label-count / --labels-xml."""

    spec = TABULAR
    codec = TableCodec(TABULAR)
    onnx = TableOnnx()
    state_keys = ("feature_names", "mean", "std")

    def read_options(self, options):
        return table_read_options(options)

    def read(self, source, *, state=None, label_names=None) -> LabeledInputs:
        """The labels and features of a table; for a trained model (`state`) exactly its feature and label columns."""
        path, options = source.labels, source.read_options
        if state is None:
            found = read_feature_table(path, sparse=True, **self.read_options(options))
        else:  # a model's table: its columns by name; options of label files do not apply and are left out
            options = {key: value for key, value in super().read_options(options).items() if key in TABULAR_OPTIONS}
            if not set(LABEL_CHOOSING_OPTIONS) & set(options):
                options["label_columns"] = label_names
            options.setdefault("id_column", state.get("id_column"))
            found = read_feature_table(path, feature_names=state["feature_names"], encoding=state.get("encoding"), **options)
        return LabeledInputs(found.labels, found.features, feature_names=found.feature_names, encoding=found.encoding)

    def build_model(self, config: TrainConfig, data: LabeledInputs) -> TagnetModel:
        return create_model(config.backbone, num_labels=data.table.num_labels, pretrained=False, dropout=config.dropout,
                            head_hidden=config.head_hidden, input_dim=data.inputs.shape[1], ensemble=config.ensemble)

    def fit_state(self, model, data, train_rows, *, text_column, read_options) -> dict[str, Any]:
        """Feature names and their offset and scale ("mean", "std": data.feature_table.fit_scaling) over the rows
        that train some head; the id column."""
        mean, std = fit_scaling(data.inputs[train_rows])
        return {"feature_names": data.feature_names, "mean": mean.tolist(), "std": std.tolist(),
                "id_column": read_options.get("id_column"), "encoding": data.encoding}

    def state_from_format_1(self, preprocess, extra) -> dict[str, Any]:
        standardize = extra.pop("standardize", {})
        return {"feature_names": extra.pop("feature_names", None), "mean": standardize.get("mean"),
                "std": standardize.get("std"), "id_column": extra.pop("id_column", None)}

    def check_state(self, state, *, source) -> None:
        super().check_state(state, source=source)
        if not len(state["feature_names"]) == len(state["mean"]) == len(state["std"]):
            raise ArtifactError(f"{source}: {len(state['feature_names'])} feature names, {len(state['mean'])} means and "
                                f"{len(state['std'])} stds; expected one of each per feature")

    def rebuild_model(self, spec, state, *, source) -> TagnetModel:
        model = create_model(spec["name"], num_labels=spec["num_labels"], pretrained=False, dropout=spec["dropout"],
                             head_hidden=spec["head_hidden"], input_dim=len(state["feature_names"]),
                             ensemble=spec.get("ensemble", 1))
        if spec.get("head") == "forest":  # a random forest as ONNX bytes (tagnet.models.trees)
            size = spec.get("forest_bytes")
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ArtifactError(f"{source}: model forest_bytes is {size!r}; expected the positive size of the "
                                    "forest's ONNX model")
            model.head = ForestHead(size)
        return model

    def head_inputs(self, model, data, state, *, cache_dir, progress, spread=None) -> HeadInputs:
        """Every row standardised once (a missing value becomes the training mean); rows of a sparse file stay a CSR
        matrix when every column is scaled without centring (data.feature_table.standardize)."""
        rows = standardize(data.inputs, np.asarray(state["mean"]), np.asarray(state["std"]))
        return HeadInputs(rows if sp.issparse(rows) else torch.from_numpy(rows))

    def read_unlabeled(self, paths, predictor) -> tuple[list[str], list, dict[str, str]]:
        """Every row of ARFF/CSV tables, labelled or not; sources FILE:ITEM."""
        state = predictor.artifact.state
        sources, rows, errors = [], [], {}
        for path in paths:
            try:
                items, features = read_feature_rows(path, feature_names=state["feature_names"],
                                                    id_column=state.get("id_column"), encoding=state.get("encoding"))
            except TagnetError as exc:
                errors[str(path)] = str(exc)
                continue
            sources += [f"{path}:{item}" for item in items]
            rows += list(features)
        return sources, rows, errors

    def probabilities(self, predictor, items) -> tuple[np.ndarray, list[int], dict[str, str]]:
        """Raw feature rows in the training column order (NaN = missing), standardised as in training (inside the
        graph on ONNX Runtime)."""
        state = predictor.artifact.state
        names = state["feature_names"]
        try:
            rows = np.asarray(check_items(items, what="feature rows"), dtype=np.float64).reshape(len(items), -1) \
                if len(items) else np.zeros((0, len(names)))
        except (ValueError, TypeError) as exc:
            raise DataError(f"a tabular model takes rows of numbers of equal length (NaN = missing); got {str(items[0])[:60]!r}... ({exc})") from None
        if rows.shape[1] != len(names):
            raise DataError(f"feature rows of shape {rows.shape}; the model expects (rows, {len(names)}) with columns "
                            f"{', '.join(names[:5])}...")
        raw = np.float64 if predictor.session is not None and predictor.session.get_inputs()[0].type == \
            "tensor(double)" else np.float32  # a forest's graph takes float64 (tagnet.models.trees.forest_graph)
        inputs = torch.from_numpy(rows.astype(raw) if predictor.session is not None
                                  else standardize(rows, np.asarray(state["mean"]), np.asarray(state["std"])))
        out = [predictor.run(inputs[start:start + predictor.batch_size])
               for start in range(0, len(inputs), predictor.batch_size)]
        probs = np.concatenate(out) if out else np.zeros((0, len(predictor.label_names)), np.float32)
        return probs, list(range(len(rows))), {}
