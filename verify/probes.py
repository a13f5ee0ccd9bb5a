"""Linear probes: ridge regression (NumPy) with a held-out split and R².

``fit_probe(X, Y)`` splits the rows at random into train / validation / test, fits
``Y ~ X W + b`` by ridge regression on train for each penalty of a grid (relative to the
mean squared feature norm, so the grid does not depend on the residual stream's scale),
keeps the penalty with the best validation R² and reports R² on the test rows, which
took no part in either choice.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 10))
>>> Y = X @ rng.normal(size=(10, 2)) + 0.01 * rng.normal(size=(400, 2))
>>> round(fit_probe(X, Y, seed=0).r2, 3)
1.0
>>> fit_probe(X, rng.permutation(Y), seed=0).r2 < 0.1    # shuffled labels: nothing to find
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from superpose.setting import SuperposeError

PENALTIES = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class ProbeError(SuperposeError):
    """Probe data of the wrong shape or too few rows."""


@dataclass
class Probe:
    W: np.ndarray          # [features, outputs]
    b: np.ndarray          # [outputs]
    penalty: float         # relative ridge penalty chosen on the validation rows
    r2: float              # held-out (test) R², averaged over the outputs that vary
    n_train: int
    n_test: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.W + self.b


def ridge(X: np.ndarray, Y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """``W, b`` minimising ``|Y - X W - b|^2 + lam |W|^2`` with ``lam = penalty * mean |x - mean x|^2``."""
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    lam = penalty * max(float((Xc ** 2).sum(1).mean()), 1e-300)
    W = np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[1]), Xc.T @ Yc)
    return W, my - mx @ W


def r2_score(Y: np.ndarray, predicted: np.ndarray) -> float:
    """``1 - SS_res / SS_tot`` per output, averaged over the outputs that vary on these rows."""
    ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
    ss_res = ((Y - predicted) ** 2).sum(0)
    varies = ss_tot > 1e-12 * len(Y)
    if not varies.any():
        raise ProbeError("r2: the targets are constant on the held-out rows")
    return float((1 - ss_res[varies] / ss_tot[varies]).mean())


def fit_probe(X: np.ndarray, Y: np.ndarray, seed: int = 0, split: tuple[float, float] = (0.6, 0.2),
              penalties=PENALTIES) -> Probe:
    """Ridge probe ``Y ~ X`` with the penalty chosen on a validation split and R² on a test split."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or len(X) != len(Y):
        raise ProbeError(f"fit_probe: X {X.shape} and Y {Y.shape} must be [rows, features] and [rows, outputs]")
    if len(X) < 20:
        raise ProbeError(f"fit_probe: {len(X)} rows are too few for a train/validation/test split")
    order = np.random.default_rng(seed).permutation(len(X))
    n_train, n_val = int(split[0] * len(X)), int(split[1] * len(X))
    train, val, test = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    scored = []
    for penalty in penalties:
        W, b = ridge(X[train], Y[train], penalty)
        scored.append((r2_score(Y[val], X[val] @ W + b), penalty))
    best = max(scored)[1]
    W, b = ridge(X[train], Y[train], best)
    return Probe(W, b, best, r2_score(Y[test], X[test] @ W + b), len(train), len(test))
