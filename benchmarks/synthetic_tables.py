"""Synthetic sparse multi-label tables shaped like MULAN's bibtex, delicious, tmc2007-500, medical and enron, written as
sparse ARFF.

Each label has its own small set of signal features; a row draws its labels (Zipf-skewed frequencies, a Poisson
number per row), switches on each of its labels' signal features with some probability, and adds background
features drawn with Zipf-skewed frequencies: sparse binary (bag-of-words-like) features correlated with the labels.

Run: python benchmarks/synthetic_tables.py --shape bibtex --out benchmarks/out/tables
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Shape:
    """A table's shape: labels, training and test rows, features, mean labels and background features per row."""

    labels: int
    train: int
    test: int
    features: int
    cardinality: float
    background: float
    signal: int = 12  # signal features per label
    on: float = 0.35  # chance a row's label switches on each of its signal features


# MULAN's sets (labels, train/test rows, features, label cardinality); background words per row set so the
# density is near the real set's, and the signal's strength so plain binary relevance scores near its published
# micro-F1 on the real set (bibtex about 0.4, delicious 0.3, tmc2007 0.75)
SHAPES = {"bibtex": Shape(159, 4880, 2515, 1836, 2.40, 60.0, on=0.14),
          "delicious": Shape(983, 12920, 3185, 500, 19.0, 12.0, signal=6, on=0.1),
          "tmc2007": Shape(22, 21519, 7077, 500, 2.16, 40.0, signal=25, on=0.15),
          # small sparse sets, where the random forest competes (its trees take the rows dense): medical, enron
          "medical": Shape(45, 333, 645, 1449, 1.25, 12.0, signal=10, on=0.3),
          "enron": Shape(53, 1123, 579, 1001, 3.38, 30.0, signal=12, on=0.15)}


def make_table(shape: Shape, *, rows: int, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(features (rows, F) CSR of 0/1, labels (rows, L) CSR of 0/1) drawn as the module docstring says."""
    rng = np.random.default_rng(seed)
    label_p = 1.0 / np.arange(1, shape.labels + 1) ** 0.9
    label_p /= label_p.sum()
    counts = np.maximum(1, rng.poisson(shape.cardinality, rows))
    label_rows = np.repeat(np.arange(rows), counts)
    label_cols = rng.choice(shape.labels, size=len(label_rows), p=label_p)
    labels = sp.csr_matrix((np.ones(len(label_rows), np.float32), (label_rows, label_cols)),
                           shape=(rows, shape.labels))
    labels.data[:] = 1.0
    signal = np.random.default_rng(seed // 1000).choice(shape.features, size=(shape.labels, shape.signal))
    hits = rng.random((len(label_rows), shape.signal)) < shape.on
    sig_rows = np.repeat(label_rows, shape.signal)[hits.ravel()]
    sig_cols = signal[label_cols].ravel()[hits.ravel()]
    word_p = 1.0 / np.arange(1, shape.features + 1) ** 1.1
    word_p /= word_p.sum()
    words = rng.poisson(shape.background, rows)
    bg_rows = np.repeat(np.arange(rows), words)
    bg_cols = rng.permutation(shape.features)[rng.choice(shape.features, size=len(bg_rows), p=word_p)]
    features = sp.csr_matrix((np.ones(len(sig_rows) + len(bg_rows), np.float32),
                              (np.r_[sig_rows, bg_rows], np.r_[sig_cols, bg_cols])), shape=(rows, shape.features))
    features.data[:] = 1.0
    return features, labels


def write_sparse_arff(path: Path, features: sp.csr_matrix, labels: sp.csr_matrix, *, relation: str) -> Path:
    """A sparse ARFF file as MULAN writes it (numeric features, then {0,1} label attributes) and its labels XML."""
    f, n_labels = features.shape[1], labels.shape[1]
    both = sp.hstack([features, labels]).tocsr()
    both.sort_indices()
    head = [f"@relation {relation}"] + [f"@attribute f{j} numeric" for j in range(f)]
    head += [f"@attribute label{j} {{0,1}}" for j in range(n_labels)] + ["@data"]
    body = ["{" + ",".join(f"{j} 1" for j in both.indices[a:b]) + "}" for a, b in zip(both.indptr[:-1], both.indptr[1:])]
    path.write_text("\n".join(head + body) + "\n")
    xml = "".join(f'<label name="label{j}"></label>' for j in range(n_labels))
    path.with_name(relation + ".xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?><labels xmlns="http://mulan.sourceforge.net/labels">{xml}</labels>\n')
    return path


def write_shape(name: str, out: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """NAME-train.arff and NAME-test.arff (and NAME.xml) of SHAPES[name] under `out`."""
    shape = SHAPES[name]
    out.mkdir(parents=True, exist_ok=True)
    features, labels = make_table(shape, rows=shape.train + shape.test, seed=seed)
    train = write_sparse_arff(out / f"{name}-train.arff", features[:shape.train], labels[:shape.train], relation=name)
    test = write_sparse_arff(out / f"{name}-test.arff", features[shape.train:], labels[shape.train:], relation=name)
    return train, test


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), nargs="+", default=sorted(SHAPES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tables"))
    args = parser.parse_args()
    for name in args.shape:
        print(*write_shape(name, args.out))
