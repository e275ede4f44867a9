"""Texts: a column of a label file, all-MiniLM-L6-v2 sentence embeddings (cached) for the head, fine-tuning on token ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from tagnet.training.budget import Throughput
from tagnet.data.labels import read_labels_with_texts
from tagnet.data.text import SORT_POOL, BucketBatchSampler, PadCollate, TokenDataset, pad_multiple, read_text_lines
from tagnet.errors import ArtifactError, ConfigError, DataError, TagnetError
from tagnet.inference.feature_cache import cached_tensor, encoder_digest
from tagnet.models import TagnetModel, set_backbone_trainable
from tagnet.models import text as text_models
from tagnet.models.text import MAX_TOKENS, SentenceEncoder, token_limit
from tagnet.modalities.base import HeadInputs, LabeledInputs, Modality, check_items
from tagnet.modalities.codecs import TextCodec
from tagnet.modalities.onnx_specs import TextOnnx
from tagnet.modalities.specs import TEXT

TABLE_ONLY_OPTIONS = ("label_count", "labels_xml")
# training batches timed to size fine-tuning to the budget (TextModality.throughput); drawn from one sampler pool, they
# pad as an epoch's batches do (8 batches bucketed from 256 random texts padded 21.4 tokens a text where an epoch pads
# 19.9 on GoEmotions: the probe measured 83 texts/s for epochs that ran at 90-92)
PROBE_BATCHES = 8


def as_text_array(texts: list[str]) -> np.ndarray:
    """Texts as a 1-D object array (indexable by row numbers like every modality's inputs)."""
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    return array


def cached_embeddings(encoder: SentenceEncoder, texts: list[str], *, cache_dir: Path,
                      progress: bool = False) -> torch.Tensor:
    """Sentence embeddings (N, width) of `texts`, cached on disk keyed by the encoder's weights and the texts."""
    digest = encoder_digest(encoder, type(encoder.transformer).__name__, encoder.max_tokens, len(texts))
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return cached_tensor(cache_dir, "text-embeddings", digest, lambda: text_models.encode_texts(encoder, texts, progress=progress))


def _distributed(config) -> bool:
    """Whether training may run in several processes (Lightning then sets the training sampler itself)."""
    return config.num_nodes > 1 or config.strategy not in ("auto", "single_device") or \
        config.devices not in ("auto", "1", 1)


class _Reindexed(torch.utils.data.Dataset):
    """A dataset in another order whose items report their original row (validation outputs are put back by it)."""

    def __init__(self, dataset: TokenDataset, order: np.ndarray) -> None:
        self.dataset, self.order = dataset, order

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        ids, targets, known, _ = self.dataset[index]
        return ids, targets, known, int(self.order[index])


class TextModality(Modality):
    """Texts in a column (or JSON key) of a label file."""

    spec = TEXT
    codec = TextCodec(TEXT)
    onnx = TextOnnx()
    state_keys = ("text_column",)

    def read_options(self, options):
        options = super().read_options(options)
        wrong = sorted(set(options) & set(TABLE_ONLY_OPTIONS))
        if wrong:
            raise ConfigError(f"option(s) {', '.join(wrong)} apply to feature tables (ARFF/CSV features), not to text files")
        return options

    def read(self, source, *, state=None, label_names=None) -> LabeledInputs:
        """A CSV/TSV or JSON(L) label file with the texts in the source's text_column (default: the trained model's,
        read with the training file's options when none are given)."""
        path, text_column = source.labels, source.text_column
        options = self.read_options(source.read_options)
        if state is not None:
            text_column = options.pop("text_column", None) or text_column or state["text_column"]
            options = options or dict(state.get("read_options") or {})
        if text_column is None:
            raise ConfigError("text inputs need the column (or JSON key) that holds the text: --text-column")
        table, texts = read_labels_with_texts(path, text_column, **options)
        return LabeledInputs(table, as_text_array(texts))

    def fit_state(self, model, data, train_rows, *, text_column, read_options) -> dict[str, Any]:
        """The text column, the training file's read options (evaluate reads files the same way) and the token limit:
        the 99th percentile of the training texts' token counts (token_limit), which the encoder takes from here on
        (training, prediction, serving and the ONNX export truncate there)."""
        encoder: SentenceEncoder = model.backbone
        encoder.max_tokens = token_limit(encoder.token_counts([data.inputs[i] for i in train_rows]))
        return {"text_column": text_column, "max_tokens": encoder.max_tokens,
                "read_options": {k: str(Path(v).resolve()) if isinstance(v, Path) else v for k, v in read_options.items()}}

    def state_from_format_1(self, preprocess, extra) -> dict[str, Any]:
        extra.pop("encoder", None)
        return {"text_column": extra.pop("text_column", None), "read_options": extra.pop("read_options", {}),
                "max_tokens": 256}

    def rebuild_model(self, spec, state, *, source) -> TagnetModel:
        """The recorded architecture, its encoder truncating at the recorded token limit."""
        model = super().rebuild_model(spec, state, source=source)
        limit = state.get("max_tokens", MAX_TOKENS)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_TOKENS:
            raise ArtifactError(f"{source}: input max_tokens is {limit!r}; expected a whole number in 1..{MAX_TOKENS}")
        model.backbone.max_tokens = limit
        return model

    def throughput(self, model, data, split, config) -> Throughput:
        """Training and inference texts/s of the whole network in the run's precision, on PROBE_BATCHES training batches
        padded as an epoch's are: one pool of the training sampler (SORT_POOL batches of random training texts, sorted
        by length and cut), every k-th batch of it by length, so their lengths spread as an epoch's do. The training
        steps are timed on the second of two runs through them (no first-call costs), and again on one thread, kept
        when faster (on a busy CPU two threads wait on each other: 4.5x slower than one at load 7)."""
        from tagnet.engine import default_precision, measure_throughput

        encoder: SentenceEncoder = model.backbone
        rng = np.random.default_rng(config.seed)
        rows = rng.choice(split[0], size=min(len(split[0]), SORT_POOL * config.batch_size), replace=False)
        ids = encoder.tokenize([data.inputs[i] for i in rows])
        lengths = np.array([len(i) for i in ids])
        pool = sorted(BucketBatchSampler(lengths, config.batch_size, seed=config.seed).one_pass(0),
                      key=lambda batch: lengths[batch].max())
        every = max(1, len(pool) // PROBE_BATCHES)
        precision = default_precision(config)
        collate = PadCollate(encoder.pad_id, pad_multiple(precision))
        dataset = TokenDataset(ids, data.table.targets[rows], data.table.known[rows])
        batches = [collate([dataset[i] for i in batch])[:2] for batch in pool[every // 2::every][:PROBE_BATCHES]]
        val_ids = encoder.tokenize([data.inputs[i] for i in split[1][:4 * config.batch_size * 3]])
        evals = [encoder.pad(val_ids[i:i + 4 * config.batch_size]) for i in range(0, len(val_ids), 4 * config.batch_size)]
        trainable = {name: p.requires_grad for name, p in model.named_parameters()}
        set_backbone_trainable(model, True)
        encoder.freeze_lower(config.finetune_frozen_layers)
        try:
            return measure_throughput(model, batches * 2, evals, precision=precision, warmup=len(batches),
                                      other_threads=(1,))
        finally:
            for name, p in model.named_parameters():
                p.requires_grad_(trainable[name])

    def head_inputs(self, model, data, state, *, cache_dir, progress, spread=None) -> HeadInputs:
        """Sentence embeddings of every text, cached on disk (cached_embeddings)."""
        return HeadInputs(cached_embeddings(model.backbone, list(data.inputs), cache_dir=cache_dir, progress=progress))

    def network_loaders(self, model, train, val, config) -> tuple[DataLoader, DataLoader]:
        """Token ids padded per batch to its longest text (rounded up to pad_multiple of the run's precision: 1 in
        32-bit, 8 in half precision); training batches hold texts of similar length (BucketBatchSampler; a plain
        shuffle in a distributed run, whose sampler Lightning sets), and validation runs sorted by length. The word
        embeddings (and the lowest config.finetune_frozen_layers layers) stay fixed while the rest fine-tunes
        (SentenceEncoder.freeze_lower)."""
        from tagnet.engine import default_precision

        encoder: SentenceEncoder = model.backbone
        encoder.freeze_lower(config.finetune_frozen_layers)
        collate = PadCollate(encoder.pad_id, pad_multiple(default_precision(config)))
        train_ids = encoder.tokenize(list(train.inputs))
        train_set = TokenDataset(train_ids, train.table.targets, train.table.known)
        if _distributed(config):
            train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, collate_fn=collate)
        else:
            sampler = BucketBatchSampler([len(ids) for ids in train_ids], config.batch_size, seed=config.seed)
            train_loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate)
        val_ids = encoder.tokenize(list(val.inputs))
        order = np.argsort([len(ids) for ids in val_ids], kind="stable")
        val_set = TokenDataset([val_ids[i] for i in order], val.table.targets[order], val.table.known[order])
        return train_loader, DataLoader(_Reindexed(val_set, order), batch_size=config.batch_size * 4, collate_fn=collate)

    def read_unlabeled(self, paths, predictor) -> tuple[list[str], list, dict[str, str]]:
        """Every non-blank line of UTF-8 text files; sources FILE:LINE."""
        sources, items, errors = [], [], {}
        for path in paths:
            try:
                texts = read_text_lines(path)
            except TagnetError as exc:
                errors[str(path)] = str(exc)
                continue
            sources += [f"{path}:{n}" for n in range(1, len(texts) + 1)]
            items += texts
        return sources, items, errors

    def default_sources(self, items) -> list[str]:
        return [str(item) for item in items]

    def probabilities(self, predictor, items) -> tuple[np.ndarray, list[int], dict[str, str]]:
        """Texts, batched by similar length (least padding)."""
        texts = check_items(items, what="texts")
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise DataError(f"a text model takes strings; text #{bad} is a {type(texts[bad]).__name__}")
        probs = np.zeros((len(texts), len(predictor.label_names)), np.float32)
        for rows, ids in predictor.model.backbone.length_batches(texts, predictor.batch_size):
            probs[rows] = predictor.run(ids)
        return probs, list(range(len(texts))), {}

    def features(self, predictor, items) -> tuple[np.ndarray, np.ndarray, list[int], dict[str, str]]:
        """Probabilities and sentence embeddings of the texts from one encoder pass, put back in the texts' order
        (the batches run by length)."""
        probs, captured, kept, errors = super().features(predictor, items)
        order = [i for rows, _ in predictor.model.backbone.length_batches(list(items), predictor.batch_size)
                 for i in rows]
        embeddings = np.zeros_like(captured)
        embeddings[order] = captured
        return probs, embeddings, kept, errors
