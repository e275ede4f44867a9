"""L2 logistic regression for every label, C and fold at once: one multi-output problem solved by full-batch L-BFGS."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch

SPARSE_DENSITY = 0.125  # rows with at most this share of nonzero cells are multiplied as CSR (zeros are skipped)
HISTORY = 20  # L-BFGS curvature pairs kept per column (8 took 1.3-1.9x the iterations on bibtex- and tmc2007-like CVs)
BLOCK_CELLS = 1 << 23  # rows x columns of one block's logits (8M cells, 32 MB of float32); a block's arrays are a few
WEIGHT_CELLS = 1 << 21  # (features + 1) x columns of one block's weights (2M cells, 8 MB): L-BFGS keeps 2 x HISTORY
#                        such arrays and a few more (0.4 GB), so a wide vocabulary splits the labels into more blocks


class _SparseRows:
    """A scipy CSR matrix that multiplies torch float32 matrices as torch's embedding_bag (each row the weighted sum
    of the other matrix's rows its nonzero cells name): 1.8x scipy's single-threaded CSR product on one thread and
    3.6x on two (a 4,880 x 1,836 bibtex-like matrix times 318 columns; benchmarks/RESULTS.md, "The sparse products
    as embedding bags")."""

    def __init__(self, matrix: sp.csr_matrix):
        self.shape = matrix.shape
        self.indices = torch.from_numpy(matrix.indices.astype(np.int64))
        self.offsets = torch.from_numpy(matrix.indptr.astype(np.int64))
        self.values = torch.from_numpy(matrix.data.astype(np.float32))

    def squared(self) -> _SparseRows:
        """The same matrix with every cell squared, sharing this one's index arrays."""
        twin = copy.copy(self)
        twin.values = self.values * self.values
        return twin

    def __matmul__(self, other: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding_bag(self.indices, other.contiguous(), self.offsets, mode="sum",
                                                 per_sample_weights=self.values, include_last_offset=True)


def as_rows(x: np.ndarray | sp.spmatrix) -> tuple[torch.Tensor | _SparseRows, ...]:
    """(X, X transposed, X squared transposed) for float32 products with torch weight matrices: _SparseRows when `x`
    is sparse (a scipy matrix, or dense with at most SPARSE_DENSITY nonzero cells), else dense torch."""
    if not sp.issparse(x) and np.count_nonzero(x) > SPARSE_DENSITY * x.size:
        dense = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return dense, dense.T, (dense * dense).T
    csr = sp.csr_matrix(x, dtype=np.float32)
    csr.sum_duplicates()
    transposed = _SparseRows(csr.T.tocsr())
    return _SparseRows(csr), transposed, transposed.squared()


def fit_logistic(x: np.ndarray | sp.spmatrix, targets: np.ndarray, known: np.ndarray, *, Cs: Sequence[float],
                 row_sets: Sequence[np.ndarray] | None = None, scale: np.ndarray | None = None, max_iter: int = 200,
                 tol: float = 1e-4) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """L2-regularised logistic regression of every label on its known rows, for every C (as scikit-learn's
    LogisticRegression(C) per label: C * sum of log losses + |w|^2 / 2, the intercept not penalised), fitted on each
    of `row_sets` (row indices; default all rows): logistic_path's fits, all of them.

    Returns:
        [[(coef (labels, features) float32, intercept (labels,) float32) per C] per row set].
    """
    by_C = list(logistic_path(x, targets, known, Cs=Cs, row_sets=row_sets, scale=scale, max_iter=max_iter, tol=tol))
    return [list(path) for path in zip(*by_C)]


def logistic_path(x: np.ndarray | sp.spmatrix, targets: np.ndarray, known: np.ndarray, *, Cs: Sequence[float],
                  row_sets: Sequence[np.ndarray] | None = None, scale: np.ndarray | None = None, max_iter: int = 200,
                  tol: float = 1e-4) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """The fits of fit_logistic one C at a time, in the order of `Cs`: a caller that stops iterating (its CV score
    has worsened along an ascending grid) never pays for the larger, slower C values.

    All labels and row sets form one problem (a weight column per label and row set) solved in blocks of columns
    (at most BLOCK_CELLS logits and WEIGHT_CELLS weights at a time) by full-batch L-BFGS run per column in lockstep
    (_lbfgs), each block warm-started from its fit at the previous C (ascending C: strong to weak). A label with one
    class on its rows gets zero weights and the logit of its rate clipped to [1e-3, 1 - 1e-3].

    Args:
        x: (rows, features) numbers, dense or scipy sparse (sparse rows are multiplied as CSR).
        targets: (rows, labels) 0/1; known: (rows, labels) bool, which cells count.
        Cs: inverse L2 strengths, fitted in the order given (ascending for the warm starts to help).
        scale: (features,) multipliers of the columns the penalty sees (the fit is on x * scale; the coefficients
            returned apply to x): how strongly each feature is held back.
        max_iter: L-BFGS iterations per C at most; tol: stop when no gradient entry of the per-row mean loss exceeds it
            (scikit-learn's LogisticRegression stops so, at the same default 1e-4).

    Yields:
        per C: [(coef (labels, features) float32, intercept (labels,) float32) per row set].
    """
    sets = [np.arange(len(targets))] if row_sets is None else [np.asarray(r) for r in row_sets]
    rows, features, labels = targets.shape[0], x.shape[1], targets.shape[1]
    if scale is not None:
        x = sp.csr_matrix(x).multiply(scale.reshape(1, -1)).tocsr() if sp.issparse(x) else x * scale
    X, XT, XT2 = as_rows(x)
    member = np.zeros((len(sets), rows), dtype=bool)
    for k, chosen in enumerate(sets):
        member[k, chosen] = True
    block = max(1, min(BLOCK_CELLS // max(1, rows * len(sets)), WEIGHT_CELLS // ((features + 1) * len(sets))))
    parts = [slice(start, min(labels, start + block)) for start in range(0, labels, block)]
    thetas: list[torch.Tensor | None] = [None] * len(parts)
    for C in Cs:
        out = [(np.zeros((labels, features), np.float32), np.zeros(labels, np.float32)) for _ in sets]
        for b, part in enumerate(parts):
            width = part.stop - part.start
            y = np.tile(targets[:, part], (1, len(sets))).astype(np.float32)
            w = (np.tile(known[:, part], (1, len(sets))) & np.repeat(member, width, axis=0).T).astype(np.float32)
            thetas[b], coef, intercept = _fit_block(X, XT, XT2, torch.from_numpy(y), torch.from_numpy(w), C=C,
                                                    theta=thetas[b], max_iter=max_iter, tol=tol)
            for k in range(len(sets)):
                columns = slice(k * width, (k + 1) * width)
                out[k][0][part], out[k][1][part] = coef[:, columns].T, intercept[columns]
        if scale is not None:
            for coef, _ in out:
                coef *= scale.astype(np.float32)
        yield out


def _fit_block(X: torch.Tensor, XT: torch.Tensor, XT2: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *, C: float,
               theta: torch.Tensor | None, max_iter: int, tol: float) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """One block of columns at one C, from `theta` (None: zero weights, each column's base-rate intercept): the
    fitted theta (features + 1, columns), the weights (features, columns) and the intercepts (columns,)."""
    count = w.sum(0).clamp(min=1)
    positives = (w * y).sum(0)
    active = (positives > 0) & (positives < w.sum(0))  # both classes present
    w = w * active / count  # each column's loss is its mean over its rows
    bias0 = torch.logit(positives / count, eps=1e-3)
    if theta is None:
        theta = torch.zeros(X.shape[1] + 1, y.shape[1])
        theta[-1] = bias0
    # the Hessian's diagonal at its largest (p (1 - p) <= 1/4): L-BFGS's first guess of the curvature
    curvature = torch.cat([0.25 * (XT2 @ w), 0.25 * w.sum(0, keepdim=True)])
    penalty = torch.cat([(active / (C * count)).expand(X.shape[1], -1), torch.zeros(1, y.shape[1])])
    theta = _lbfgs(theta, X, XT, y, w, penalty=penalty, diagonal=curvature + penalty + 1e-8, max_iter=max_iter,
                   tol=tol)
    return theta, (theta[:-1] * active).numpy().copy(), torch.where(active, theta[-1], bias0).numpy().copy()


def _loss(logits: torch.Tensor, theta: torch.Tensor, y: torch.Tensor, w: torch.Tensor, penalty: torch.Tensor
          ) -> torch.Tensor:
    """Each column's mean log loss at `logits` plus the penalty of `theta` (float64)."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=w, reduction="none").sum(
        0, dtype=torch.float64)  # softplus(logits) - y logits, weighted, in one pass (half the time of the four)
    return loss + 0.5 * (penalty * theta * theta).sum(0, dtype=torch.float64)


def _gradient(theta: torch.Tensor, logits: torch.Tensor, XT: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
              penalty: torch.Tensor) -> torch.Tensor:
    residual = torch.sigmoid(logits).sub_(y).mul_(w)
    return torch.cat([XT @ residual, residual.sum(0, keepdim=True)]) + penalty * theta


def _lbfgs(theta: torch.Tensor, X: torch.Tensor, XT: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *,
           penalty: torch.Tensor, diagonal: torch.Tensor, max_iter: int, tol: float) -> torch.Tensor:
    """Minimise every column's objective on its own, in lockstep: L-BFGS with a per-column history, the diagonal
    `diagonal` (scaled to the newest curvature pair) as the curvature guess and a per-column backtracking (Armijo)
    line search; a column stops when no entry of its gradient exceeds `tol`, and once most have stopped the others
    go on alone (every per-column array, curvature pairs included, cut to their columns). Two products with the rows
    per iteration: the step's logits (a trial's logits are the current ones plus its size times those, so
    backtracking costs no product) and the gradient."""
    fitted, columns = theta.clone(), torch.arange(theta.shape[1])  # columns: those still worked on, in `fitted`
    logits = X @ theta[:-1] + theta[-1]
    loss = _loss(logits, theta, y, w, penalty)
    grad = _gradient(theta, logits, XT, y, w, penalty)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    stalled = torch.zeros(theta.shape[1], dtype=torch.bool)  # no decrease found: float32's resolution is reached
    for done in range(max_iter):
        moving = (grad.abs().amax(0) > tol) & ~stalled
        if not moving.any():
            break
        if done and 2 * int(moving.sum()) < len(moving):  # most columns done: go on with the others alone
            fitted[:, columns] = theta
            at = moving.nonzero().squeeze(1)
            columns, theta, logits, loss, grad, y, w, penalty, diagonal, stalled, moving = (part[..., at] for part in (
                columns, theta, logits, loss, grad, y, w, penalty, diagonal, stalled, moving))
            pairs = [(s[:, at], g[:, at], rho[at]) for s, g, rho in pairs]
        step = _direction(grad, pairs, diagonal) * moving
        slope = (grad * step).sum(0, dtype=torch.float64)
        moved = X @ step[:-1] + step[-1]  # the logits' change per unit step
        size = torch.ones(theta.shape[1], dtype=torch.float64)
        for _ in range(20):
            trial, new_logits = theta + step * size.float(), logits + moved * size.float()
            new_loss = _loss(new_logits, trial, y, w, penalty)
            fine = (new_loss <= loss + 1e-4 * size * slope) | ~moving
            if fine.all():
                break
            size = torch.where(fine, size, size * 0.5)
        if not fine.all():
            stalled |= ~fine
            size = size * fine
            trial, new_logits = theta + step * size.float(), logits + moved * size.float()
            new_loss = _loss(new_logits, trial, y, w, penalty)
        new_grad = _gradient(trial, new_logits, XT, y, w, penalty)
        s, g = trial - theta, new_grad - grad
        curv = (s * g).sum(0)
        pairs = (pairs + [(s, g, torch.where(curv > 1e-10, 1.0 / curv.clamp(min=1e-10), 0.0))])[-HISTORY:]
        theta, logits, loss, grad = trial, new_logits, new_loss, new_grad
    fitted[:, columns] = theta
    return fitted


def _direction(grad: torch.Tensor, pairs: list, diagonal: torch.Tensor) -> torch.Tensor:
    """-H grad by the L-BFGS two-loop recursion, per column (a pair with no positive curvature counts for nothing)."""
    q = grad.clone()
    alphas = []
    for s, g, rho in reversed(pairs):
        alpha = rho * (s * q).sum(0)
        q.addcmul_(g, alpha, value=-1)  # in place: no temporary of the weights' size
        alphas.append(alpha)
    r = q / diagonal
    if pairs:  # the diagonal's scale fitted to the newest pair (Nocedal and Wright's gamma, preconditioned)
        s, g, rho = pairs[-1]
        fitted = (s * g).sum(0) / (g * g / diagonal).sum(0).clamp(min=1e-30)
        r *= torch.where(rho > 0, fitted, 1.0)
    for (s, g, rho), alpha in zip(pairs, reversed(alphas)):
        r.addcmul_(s, alpha - rho * (g * r).sum(0))
    return -r
