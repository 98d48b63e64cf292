"""Honest baselines, scored on the model's own test windows: what the model has to beat.

- **majority class**: always the most common training class (its test accuracy is near the floor);
- **queue imbalance** (Gould & Bonart 2015): I = (Q_bid − Q_ask) / (Q_bid + Q_ask) at the touch
  of the window's last book, multinomial logistic regression;
- **multi-level order-flow imbalance** (Cont, Kukanov & Stoikov 2014 per event; Xu, Gould &
  Howison's MLOFI per level): per level i and book event n,
  e = 1{P^b_n ≥ P^b_{n−1}} q^b_n − 1{P^b_n ≤ P^b_{n−1}} q^b_{n−1}
      − 1{P^a_n ≤ P^a_{n−1}} q^a_n + 1{P^a_n ≥ P^a_{n−1}} q^a_{n−1}
  (weak inequalities: an unchanged price contributes the change in queue), summed over the last
  10 events and over the model's whole window, for every level the model reads; multinomial
  logistic regression on those 2·levels features.

The logistic regressions are fitted with the same class weights as the model (so none is judged
on a class balance the others were not trained for), on standardised features, by full-batch
L-BFGS with a small L2 penalty (torch: no new dependency). A baseline sees only what the model's
window holds — the same book records, never a record after the window's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hftbot.model.labels import N_CLASSES, segment_ids, usable_mask
from hftbot.records import BOOK_RESYNC

SHORT_LOOKBACK = 10


def queue_imbalance(records: np.ndarray) -> np.ndarray:
    """(Q_bid − Q_ask) / (Q_bid + Q_ask) at the touch, per record (0 where it is not defined)."""
    qb = records["bid_qty"][:, 0].astype(np.float64)
    qa = records["ask_qty"][:, 0].astype(np.float64)
    tot = qb + qa
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (qb - qa) / tot, 0.0)


def level_ofi(records: np.ndarray, levels: int) -> np.ndarray:
    """Order-flow imbalance e_n per record and level, (n, levels) in base units; 0 at the first
    record of every segment (there is no previous book to compare with)."""
    lot = records["lot"][:, None].astype(np.float64)
    pb = records["bid_px"][:, :levels]
    qb = records["bid_qty"][:, :levels] * lot
    pa = records["ask_px"][:, :levels]
    qa = records["ask_qty"][:, :levels] * lot
    e = np.zeros((len(records), levels))
    if len(records) < 2:
        return e
    up_b, dn_b = pb[1:] >= pb[:-1], pb[1:] <= pb[:-1]
    up_a, dn_a = pa[1:] >= pa[:-1], pa[1:] <= pa[:-1]
    e[1:] = up_b * qb[1:] - dn_b * qb[:-1] - dn_a * qa[1:] + up_a * qa[:-1]
    seg = segment_ids(usable_mask(records), (records["flags"] & BOOK_RESYNC) != 0)
    start = np.ones(len(records), dtype=bool)
    start[1:] = seg[1:] != seg[:-1]
    e[start | (seg < 0)] = 0.0
    return e


def ofi_features(records: np.ndarray, ends: np.ndarray, levels: int, window: int) -> np.ndarray:
    """Per window end t (index into `records`): OFI per level summed over t−9 .. t and over the
    window t−W+1 .. t (the window lies in one segment, so neither sum crosses a gap)."""
    e = level_ofi(records, levels)
    cs = np.concatenate([np.zeros((1, levels)), np.cumsum(e, axis=0)])
    cols = []
    for lb in (min(SHORT_LOOKBACK, window), window):
        lo = np.maximum(ends + 1 - lb, 0)
        cols.append(cs[ends + 1] - cs[lo])
    return np.concatenate(cols, axis=1)


def features_at(records: np.ndarray, ends: np.ndarray, levels: int, window: int) -> dict[str, np.ndarray]:
    """Inputs of each baseline at the window ends (indices into `records`)."""
    return {
        "queue_imbalance_lr": queue_imbalance(records)[ends][:, None],
        "mlofi_lr": ofi_features(records, ends, levels, window),
    }


class Majority:
    """Always the most frequent training class."""

    def fit(self, x: np.ndarray | None, y: np.ndarray, weights: np.ndarray | None = None) -> Majority:
        self.cls = int(np.bincount(y, minlength=N_CLASSES).argmax())
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.cls, dtype=np.int64)


@dataclass
class LogisticRegression:
    """Multinomial logistic regression, class-weighted, L2 `l2` on the weights (not the bias)."""

    l2: float = 1e-4
    max_iter: int = 200

    def fit(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> LogisticRegression:
        import torch

        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        self.std = np.maximum(x.std(axis=0), 1e-12)
        xt = torch.from_numpy((x - self.mean) / self.std)
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        cw = torch.from_numpy(np.asarray(weights if weights is not None else np.ones(N_CLASSES), dtype=np.float64))
        w = torch.zeros(x.shape[1], N_CLASSES, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(N_CLASSES, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe")
        loss_fn = torch.nn.CrossEntropyLoss(weight=cw)

        def closure():
            opt.zero_grad()
            loss = loss_fn(xt @ w + b, yt) + self.l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.w = w.detach().numpy()
        self.b = b.detach().numpy()
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std) @ self.w + self.b

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(axis=1)


NAMES = ("majority", "queue_imbalance_lr", "mlofi_lr")


def fit_baselines(train_x: dict[str, np.ndarray], train_y: np.ndarray, weights: np.ndarray) -> dict:
    """The three baselines fitted on the same training windows (features from `features_at`)."""
    return {
        "majority": Majority().fit(None, train_y),
        "queue_imbalance_lr": LogisticRegression().fit(train_x["queue_imbalance_lr"], train_y, weights),
        "mlofi_lr": LogisticRegression().fit(train_x["mlofi_lr"], train_y, weights),
    }


def predict_baselines(models: dict, x: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {name: m.predict(x[name] if name in x else np.zeros((n, 1))) for name, m in models.items()}
