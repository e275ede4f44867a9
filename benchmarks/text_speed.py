"""Fine-tuning throughput of MiniLM on GoEmotions texts, before and after the fast path (texts/s of training steps).

before: random batches padded to their longest text, the whole encoder trained (word embeddings too);
after:  length-bucketed batches (BucketBatchSampler) padded to a multiple of 8 (PadCollate), word embeddings fixed.
Both: bf16 autocast where the CPU has it (else fp32), batch 32, AdamW, every torch thread; the first N training
texts, one pass over the same STEPS batches after 3 warm-up steps. Run: python benchmarks/text_speed.py [--texts 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from tagnet.data.labels import read_labels_with_texts
from tagnet.data.text import PAD_MULTIPLE, BucketBatchSampler, PadCollate, TokenDataset
from tagnet.models import create_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions"
READ = {"no_header": True, "id_column": "2", "label_names_file": DATA / "labels.txt"}


def measure(mode: str, texts: list[str], targets: np.ndarray, *, steps: int, batch_size: int = 32) -> dict:
    torch.manual_seed(0)
    model = create_model("minilm_l6", num_labels=targets.shape[1], head_hidden=1024)
    encoder = model.backbone
    ids = encoder.tokenize(texts)
    data = TokenDataset(ids, targets, np.ones_like(targets, dtype=bool))
    if mode == "after":
        encoder.freeze_word_embeddings()
        batches = BucketBatchSampler([len(i) for i in ids], batch_size, seed=0).one_pass(0)
        collate = PadCollate(encoder.pad_id, PAD_MULTIPLE)
    else:
        order = np.random.default_rng(0).permutation(len(ids))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        collate = PadCollate(encoder.pad_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    bf16 = torch.cpu._is_avx512_bf16_supported()
    model.train()
    done, seconds, tokens = 0, 0.0, 0
    for k, batch in enumerate(batches[:steps + 3]):
        x, y, _, _ = collate([data[i] for i in batch])
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if k >= 3:
            done, seconds, tokens = done + len(batch), seconds + time.perf_counter() - started, tokens + x.numel()
    return {"mode": mode, "texts_per_s": round(done / seconds, 1), "padded_tokens_per_text": round(tokens / done, 1),
            "bf16": bf16, "threads": torch.get_num_threads(), "load": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    table, texts = read_labels_with_texts(DATA / "train.tsv", "0", **READ)
    for mode in ("before", "after"):
        print(json.dumps(measure(mode, texts[:args.texts], table.targets[:args.texts], steps=args.steps)), flush=True)


if __name__ == "__main__":
    main()
