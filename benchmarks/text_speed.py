"""Fine-tuning throughput of MiniLM on GoEmotions texts: texts/s of training steps (forward, loss, backward, AdamW).

Arms, interleaved in one process (each arm its own copy of the model and optimiser, the same batches in the same order;
the arms' order reversed every other round), so that the shared machine's load falls on all of them alike:
  before  random batches padded to their longest text, the whole encoder trained (word embeddings too), AdamW loop
  main    length-bucketed batches (BucketBatchSampler) padded to a multiple of 8, word embeddings fixed, torch's
          default AdamW (a loop of small ops per parameter tensor): the text recipe up to issue 25's "textfast"
  fused   main with tagnet's AdamW (engine.optim.adamw: fused where every parameter is a float CPU/CUDA tensor)
  pad1    main with batches padded to their longest text (no multiple of 8)
  new     what the text recipe does now: engine.optim.adamw, padded to data.text.pad_multiple of the precision
The run's precision: bf16 autocast where the CPU has it (else fp32); batch 32; the first N training texts; the token
limit 40 (what GoEmotions' default run chooses). Each round times STEPS batches per arm after 3 warm-up steps per arm.
--clock cpu (with --threads 1 only) times the calling thread's CPU seconds: robust to other processes on the cores;
wall times seconds on the clock. Each round prints texts/s per arm and the load; the summary gives each arm's median
and its median per-round ratio to the first arm.
Run: python benchmarks/text_speed.py [--data ../shared/data/goemotions] [--texts 3000] [--rounds 6] [--steps 4] [--threads 1] [--clock cpu]
     [--arms main,fused,pad1,new]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tagnet.data.labels import read_labels_with_texts
from tagnet.data.text import BucketBatchSampler, PadCollate, TokenDataset, pad_multiple
from tagnet.engine.optim import adamw
from tagnet.models import create_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions"
ARMS = ("before", "main", "fused", "pad1", "new")
PRECISION = "bf16-mixed" if torch.cpu._is_avx512_bf16_supported() else "32-true"


def arm_setup(arm: str, model: torch.nn.Module, data: TokenDataset, lengths: list[int], batch_size: int):
    """(model, optimiser, batches) of `arm`: its own copy of `model` and the padded batches it trains on."""
    model = copy.deepcopy(model)
    encoder = model.backbone
    if arm == "before":
        order = np.random.default_rng(0).permutation(len(lengths))
        rows, multiple = [order[i:i + batch_size] for i in range(0, len(order), batch_size)], 1
    else:
        encoder.freeze_lower()
        rows = BucketBatchSampler(lengths, batch_size, seed=0).one_pass(0)
        multiple = {"pad1": 1, "new": pad_multiple(PRECISION)}.get(arm, 8)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw([{"params": trainable, "lr": 5e-5}], weight_decay=1e-4) if arm in ("fused", "new") else \
        torch.optim.AdamW(trainable, lr=5e-5, weight_decay=1e-4)
    collate = PadCollate(encoder.pad_id, multiple)
    model.train()
    return model, optimizer, [collate([data[i] for i in batch])[:2] for batch in rows]


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list, clock) -> tuple[int, float]:
    """(texts, seconds by `clock`) of training steps on `batches`."""
    started, texts = clock(), 0
    for ids, targets in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=PRECISION == "bf16-mixed"):
            logits = model(ids)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        texts += len(ids)
    return texts, clock() - started


def compare(arms: list[str], texts: list[str], targets: np.ndarray, *, rounds: int, steps: int, clock) -> dict:
    """Interleaved rounds of `steps` training steps per arm; texts/s per arm and round."""
    torch.manual_seed(0)
    model = create_model("minilm_l6", num_labels=targets.shape[1], head_hidden=1024)
    model.backbone.max_tokens = 40
    ids = model.backbone.tokenize(texts)
    data = TokenDataset(ids, targets, np.ones_like(targets, dtype=bool))
    setups = {arm: arm_setup(arm, model, data, [len(i) for i in ids], 32) for arm in arms}
    for network, optimizer, batches in setups.values():  # warm-up
        train_steps(network, optimizer, batches[:3], clock)
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    for number in range(rounds):
        for arm in arms if number % 2 == 0 else arms[::-1]:
            network, optimizer, batches = setups[arm]
            done, seconds = train_steps(network, optimizer, batches[3 + number * steps:3 + (number + 1) * steps], clock)
            rates[arm].append(done / seconds)
        print(json.dumps({"round": number, **{arm: round(rates[arm][-1], 1) for arm in arms},
                          "load": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    tokens = {arm: round(float(np.mean([b[0].shape[1] for b in setups[arm][2]])), 1) for arm in arms}
    return {arm: {"median_texts_per_s": round(statistics.median(rates[arm]), 1),
                  "ratio_to_first": round(statistics.median(a / b for a, b in zip(rates[arm], rates[arms[0]])), 3),
                  "padded_tokens_per_text": tokens[arm]} for arm in arms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the GoEmotions folder (train.tsv, labels.txt)")
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4, help="training steps per arm and round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=("cpu", "wall"), default="wall")
    parser.add_argument("--arms", default="main,fused,pad1,new")
    args = parser.parse_args()
    arms = args.arms.split(",")
    if not set(arms) <= set(ARMS) or args.rounds * args.steps + 3 > args.texts // 32:
        parser.error(f"arms are among {', '.join(ARMS)}; rounds x steps + 3 must be at most texts / 32 batches")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu counts the calling thread only: use it with --threads 1")
    torch.set_num_threads(args.threads)
    table, texts = read_labels_with_texts(args.data / "train.tsv", "0", no_header=True, id_column="2",
                                          label_names_file=args.data / "labels.txt")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    summary = compare(arms, texts[:args.texts], table.targets[:args.texts], rounds=args.rounds, steps=args.steps,
                      clock=clock)
    print(json.dumps({"summary": summary, "precision": PRECISION, "threads": args.threads, "clock": args.clock,
                      "load": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
