"""Text inputs: texts read from a file for prediction, and token-id datasets for fine-tuning a text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from tagnet.errors import DataError

SORT_POOL = 50  # batches' worth of shuffled rows a training pass sorts by length at a time (BucketBatchSampler)


def read_text_lines(path: str | Path) -> list[str]:
    """The texts of a UTF-8 text file, one per non-blank line (surrounding whitespace removed).

    Raises:
        DataError: the file is missing, not UTF-8, or holds no text.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"text file {path} does not exist; expected a UTF-8 file with one text per line")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise DataError(f"{path} holds no text; expected one text per line")
    return texts


class TokenDataset(Dataset):
    """Items (token ids (T,), targets float (L,), known bool (L,), index) for fine-tuning; batch with PadCollate."""

    def __init__(self, token_ids: Sequence[Sequence[int]], targets: np.ndarray, known: np.ndarray) -> None:
        assert len(token_ids) == len(targets) == len(known)
        self.token_ids = [torch.as_tensor(ids, dtype=torch.long) for ids in token_ids]
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.known = torch.as_tensor(known, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        return self.token_ids[index], self.targets[index], self.known[index], index


class PadCollate:
    """Stacks TokenDataset items, padding the token ids on the right with `pad_id` to the batch's longest text (rounded
    up to a multiple of `multiple` tokens)."""

    def __init__(self, pad_id: int, multiple: int = 1) -> None:
        self.pad_id, self.multiple = pad_id, multiple

    def __call__(self, items: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, targets, known, index = zip(*items)
        padded = pad_sequence(list(ids), batch_first=True, padding_value=self.pad_id)
        extra = -padded.shape[1] % self.multiple
        if extra:
            padded = torch.nn.functional.pad(padded, (0, extra), value=self.pad_id)
        return padded, torch.stack(targets), torch.stack(known), torch.as_tensor(index)


def pad_multiple(precision: str) -> int:
    """The multiple of tokens a fine-tuning batch is padded to in Lightning precision `precision`: 8 under half or
    8-bit precision (GPU tensor cores and oneDNN's per-shape kernels want few, aligned shapes), else 1: 32- and 64-bit
    matrix products pay for every padded token (GoEmotions batches: 22.6 tokens per text padded to 8, 19.3 to the
    longest text, of 18.9 real)."""
    return 1 if precision.split("-")[0] in ("32", "64") else 8


class _EpochOf:
    """What Lightning calls set_epoch on (a DataLoader's batch_sampler.sampler): forwards it to the batch sampler."""

    def __init__(self, owner: "BucketBatchSampler") -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class BucketBatchSampler:
    """Batches of row numbers of similar token length, for training: per pass over the rows, a seeded shuffle, cut into
    pools of `pool` batches, each pool sorted by length and cut into batches, and the batches shuffled. Every row is in
    exactly one batch of each pass; a batch pads little, and its lengths are random from pass to pass.

    With `batches_per_epoch`, an epoch is that many batches of one endless stream of passes (pass p shuffled with
    seed + p), so a time budget can ask for 1.6 passes as 2 epochs of 0.8; epoch e is the same batches whoever asks
    (set_epoch, which Lightning calls; a resumed run continues the stream where it stopped).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, pool: int = SORT_POOL,
                 batches_per_epoch: int | None = None) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.pool = batch_size, seed, pool
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0
        self.sampler = _EpochOf(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def batches_per_pass(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def one_pass(self, number: int) -> list[np.ndarray]:
        """The batches of pass `number` (each row exactly once)."""
        rng = np.random.default_rng([self.seed, number])
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start:start + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return self.batches_per_epoch or self.batches_per_pass

    def __iter__(self):
        if self.batches_per_epoch is None:
            yield from (batch.tolist() for batch in self.one_pass(self.epoch))
            return
        first = self.epoch * self.batches_per_epoch
        number, offset = divmod(first, self.batches_per_pass)
        left = self.batches_per_epoch
        while left > 0:
            batches = self.one_pass(number)[offset:offset + left]
            yield from (batch.tolist() for batch in batches)
            left -= len(batches)
            number, offset = number + 1, 0
