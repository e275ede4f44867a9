"""Text inputs: texts read from a file for prediction, and token-id datasets for fine-tuning a text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from tagnet.errors import DataError


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
    """Stacks TokenDataset items, padding the token ids on the right with `pad_id` to the batch's longest text."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, targets, known, index = zip(*items)
        return (pad_sequence(list(ids), batch_first=True, padding_value=self.pad_id), torch.stack(targets),
                torch.stack(known), torch.as_tensor(index))
