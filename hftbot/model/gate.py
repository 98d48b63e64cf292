"""Promotion gate: a candidate replaces the current model only if it beats it on held-out data.

Both models are scored on the same windows of the most recent held-out period (the candidate's
test split): the windows that are complete under both feature specs (each model gets its own
rows, with its own normalisation) and carry a label under the candidate's rule. The decision
needs the candidate better on macro-F1 (by more than `min_delta`) and not worse on every other
score the gate knows: a scorer registered with `register_scorer` — the backtester's net PnL
(`hftbot.backtest.scorer`, registered by the trainer for the duration of its gate when the data
has raw frames) — joins the decision with no change here. No current model, or a current model that is
refused at load, is no model to protect: the candidate is promoted. A current model that loads
but cannot be scored on this data (more levels than the data has) blocks promotion unless forced.

`decide` is pure; `score_on_period` runs models; neither moves `CURRENT` — the trainer does,
after writing the decision into the candidate's metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hftbot.model.checkpoint import CheckpointError, Compat, load_checkpoint, read_pointer
from hftbot.model.dataset import Part, Recordings, iso_utc, load_part
from hftbot.model.features import FeatureSpec
from hftbot.model.labels import LabelRule, classify
from hftbot.model.metrics import confusion, scores


@dataclass
class Period:
    """What a scorer sees of the held-out period: where the windows are and their labels."""

    rec: Recordings
    parts: list[Part]
    ends: list[np.ndarray]  # per part, the record indices (in its file) of the scored windows
    labels: np.ndarray  # all scored windows, in part order


# A scorer maps (probabilities (n, 3) over the period's windows, the period) to a number; larger is better.
Scorer = Callable[[np.ndarray, Period], float]


def _macro_f1(probs: np.ndarray, period: Period) -> float:
    return scores(confusion(period.labels, probs.argmax(axis=1)))["macro_f1"]


SCORERS: dict[str, Scorer] = {"macro_f1": _macro_f1}


def register_scorer(name: str, fn: Scorer) -> None:
    """Add a score the gate must see improved (e.g. "net_pnl" from the backtester)."""
    SCORERS[name] = fn


@dataclass
class Decision:
    promote: bool
    reason: str
    candidate: dict[str, float]
    current: dict[str, float] | None
    current_model: str | None
    windows: int = 0
    period: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        cur = ", ".join(f"{k} {v:.4f}" for k, v in (self.current or {}).items()) or "none"
        cand = ", ".join(f"{k} {v:.4f}" for k, v in self.candidate.items())
        verdict = "PROMOTE" if self.promote else "KEEP CURRENT"
        return (f"gate: {verdict} - {self.reason}\n  candidate: {cand}\n  current ({self.current_model or 'none'}): "
                f"{cur}\n  on {self.windows:,} windows of the held-out period {self.period.get('start', '?')} .. "
                f"{self.period.get('end', '?')}")


def decide(candidate: dict[str, float], current: dict[str, float] | None, min_delta: float = 0.0) -> tuple[bool, str]:
    """(promote, why): macro-F1 better by more than min_delta, every other score both have (the
    backtester's net PnL) not worse — two models that both trade nothing tie at 0 and the better
    classifier goes on."""
    if current is None:
        return True, "no current model to beat"
    worse = []
    for k, v in candidate.items():
        if k not in current:
            continue
        if k == "macro_f1":
            need = current[k] + min_delta
            if not v > need:
                worse.append(f"{k} {v:.4f} <= {need:.4f}")
        elif not v >= current[k]:
            worse.append(f"{k} {v:.4f} < {current[k]:.4f}")
    if worse:
        return False, "candidate does not beat the current model: " + "; ".join(worse)
    return True, "candidate beats the current model on " + ", ".join(k for k in candidate if k in current)


def held_out_period(rec: Recordings, parts: Sequence[Part], specs: Sequence[FeatureSpec],
                    rule: LabelRule) -> Period:
    """The windows complete under every spec and labelled under `rule`, with their labels."""
    ends, labels = [], []
    for p in parts:
        loaded = [load_part(rec, p, s, rule, rows=False) for s in specs]
        common = loaded[0].ends
        for d in loaded[1:]:
            common = np.intersect1d(common, d.ends, assume_unique=True)
        ends.append(common)
        d0 = loaded[0]
        labels.append(classify(d0.change[np.searchsorted(d0.ends, common)], rule.threshold_bps))
    lab = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int8)
    return Period(rec, list(parts), ends, lab)


def probabilities(model_fn: Callable[[np.ndarray], np.ndarray], rec: Recordings, parts: Sequence[Part],
                  ends: Sequence[np.ndarray], spec: FeatureSpec, rule: LabelRule, batch: int = 512
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, 3), labels (n,)) of `model_fn` (windows → logits) at the given ends."""
    probs, labels = [], []
    for p, e in zip(parts, ends, strict=True):
        if not len(e):
            continue
        d = load_part(rec, p, spec, rule)
        idx = np.searchsorted(d.ends, e)
        if not np.array_equal(d.ends[idx], e):
            raise ValueError(f"gate: some windows are not complete under the spec (window {spec.window})")
        for k in range(0, len(idx), batch):
            sel = idx[k:k + batch]
            logits = np.asarray(model_fn(d.windows(sel)), dtype=np.float64)
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs.append(z / z.sum(axis=1, keepdims=True))
            labels.append(classify(d.change[sel], rule.threshold_bps))
    if not probs:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int8)
    return np.concatenate(probs), np.concatenate(labels)


def score_on_period(model_fn: Callable[[np.ndarray], np.ndarray], spec: FeatureSpec, period: Period,
                    rule: LabelRule) -> dict[str, float]:
    probs, labels = probabilities(model_fn, period.rec, period.parts, period.ends, spec, rule)
    if not np.array_equal(labels, period.labels):  # pragma: no cover - both come from the same records
        raise RuntimeError("gate: labels differ between the two models' windows")
    if not len(labels):
        raise ValueError("gate: no window of the held-out period is complete under both models")
    return {name: float(fn(probs, period)) for name, fn in SCORERS.items()}


def torch_model_fn(model) -> Callable[[np.ndarray], np.ndarray]:
    """Windows → logits through a torch module (CPU, float32, no grad)."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()

    return run


def run_gate(candidate_fn: Callable[[np.ndarray], np.ndarray], spec: FeatureSpec, rec: Recordings,
             parts: Sequence[Part], rule: LabelRule, out_dir: Path, compat: Compat, min_delta: float = 0.0,
             force: bool = False) -> Decision:
    """Score the candidate and the model `out_dir/CURRENT` names on the same held-out windows; decide."""
    current_name, current, cur_spec, why_none = None, None, None, ""
    try:
        target = read_pointer(out_dir)
        if target is not None:
            current_name = target.name
            loaded = load_checkpoint(target, compat)
            current, cur_spec = loaded.script, loaded.spec
    except CheckpointError as e:
        why_none = f"the current model is refused ({e}); there is nothing valid to protect"
    specs = [spec] + ([cur_spec] if cur_spec is not None else [])
    try:
        if cur_spec is not None and cur_spec.levels > rec.levels:
            raise ValueError(f"the current model reads {cur_spec.levels} levels, the data carries {rec.levels}")
        period = held_out_period(rec, parts, specs, rule)
        cand = score_on_period(candidate_fn, spec, period, rule)
        cur = score_on_period(torch_model_fn(current), cur_spec, period, rule) if current is not None else None
    except ValueError as e:
        if force:
            return Decision(True, f"--force-promote: the current model cannot be scored here ({e})", {}, None,
                            current_name)
        return Decision(False, f"the current model cannot be scored on this data ({e}); --force-promote "
                               f"replaces it anyway", {}, None, current_name)
    promote, reason = decide(cand, cur, min_delta)
    if current is None and why_none:
        reason = why_none
    ns = np.concatenate([_end_times(rec, p, e) for p, e in zip(period.parts, period.ends, strict=True)])
    return Decision(promote, reason, cand, cur, current_name, len(period.labels),
                    {"start": iso_utc(int(ns.min())), "end": iso_utc(int(ns.max()))} if len(ns) else {})


def _end_times(rec: Recordings, part: Part, ends: np.ndarray) -> np.ndarray:
    return np.asarray(rec.files[part.file].open()["recv_ns"][ends], dtype=np.int64)
