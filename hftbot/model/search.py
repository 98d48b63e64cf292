"""Search over features and model with Optuna: `python training/train.py --search N`.

The space is what the serving runtime can serve — book levels (≤ `feed.levels`), window
(≥ the valid-padding receptive field, ≤ `inference.max_window`), `price_ref` — together with the
label horizon and threshold, the network's widths, the learning rate and the batch size. Each
trial is one ordinary training run (`train.py`'s own loop) judged on the **validation** period
only: the test period is never looked at while searching.

The objective is the trial's best validation macro-F1 *minus* the best baseline's validation
macro-F1 on the same labels (queue imbalance / MLOFI logistic regression, majority class).
Horizon and threshold change the task itself — a long horizon or a low threshold is easier to
call — so raw macro-F1 would reward the easiest labels rather than the best model; the margin
over the cheap baselines is what the model adds. The same margin is reported after every epoch
to Optuna's median pruner, which stops trials that trail the others at the same epoch.

Storage: a SQLite file by default (`sqlite:///<logdir>/search.db`), or any Optuna storage URL
(`--storage postgresql://...`), so several processes or machines that name the same storage and
study (`--study`) share one study: each worker runs its N trials and sees the others'.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

SPACE_DOC = {
    "levels": (5, 10), "window": (50, 100), "price_ref": ("prev_mid", "mid"), "horizon": (20, 50, 100),
    "threshold_bps": "0.2 .. 2.0 (log)", "conv_filters": (8, 16, 32), "inception_filters": (16, 32, 64),
    "lstm_hidden": (32, 64), "lr": "1e-4 .. 3e-3 (log)", "batch_size": (32, 64, 128),
}


def suggest(trial, max_levels: int, max_window: int, pinned: frozenset[str] = frozenset()) -> dict:
    """One point of the space (Optuna's define-by-run API); `pinned` settings (given as flags) stay
    out of it, so `--search 20 --window 100` searches everything but the window."""
    levels = [x for x in (5, 10) if x <= max_levels] or [max_levels]
    windows = [x for x in (50, 100) if x <= max_window] or [max_window]
    space = {
        "levels": lambda: trial.suggest_categorical("levels", levels),
        "window": lambda: trial.suggest_categorical("window", windows),
        "price_ref": lambda: trial.suggest_categorical("price_ref", ["prev_mid", "mid"]),
        "horizon": lambda: trial.suggest_categorical("horizon", [20, 50, 100]),
        "threshold_bps": lambda: trial.suggest_float("threshold_bps", 0.2, 2.0, log=True),
        "conv_filters": lambda: trial.suggest_categorical("conv_filters", [8, 16, 32]),
        "inception_filters": lambda: trial.suggest_categorical("inception_filters", [16, 32, 64]),
        "lstm_hidden": lambda: trial.suggest_categorical("lstm_hidden", [32, 64]),
        "lr": lambda: trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "batch_size": lambda: trial.suggest_categorical("batch_size", [32, 64, 128]),
    }
    out = {k: f() for k, f in space.items() if k not in pinned}
    if "threshold_bps" in out:
        out["threshold_mode"] = "fixed"
    return out


def pinned_settings(a) -> frozenset[str]:
    """The [model] settings given as flags on this command line."""
    names = {k[len("model_"):] for k, v in vars(a).items() if k.startswith("model_") and v is not None}
    if getattr(a, "threshold", None) is not None:
        names |= {"threshold_bps", "threshold_mode"}
    return frozenset(names)


SEARCHED = frozenset({"levels", "window", "price_ref", "horizon", "threshold_bps", "conv_filters",
                      "inception_filters", "lstm_hidden", "lr", "batch_size"})


def storage_url(given: str | None, configured: str, logdir: str) -> str:
    if given:
        return given
    if configured:
        return configured
    Path(logdir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(logdir).resolve() / 'search.db'}"


def open_study(url: str, name: str):
    """Create or join the study; SQLite waits for a busy database instead of failing at once."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(10):  # workers starting together race to create the schema: the loser retries
        try:
            storage = url
            if url.startswith("sqlite:"):
                storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
            return optuna.create_study(
                study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
            )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            if attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def run(a, m, cfg, train: Callable, n_trials: int, log: Callable[[str], None] = print) -> int:
    """This worker's `n_trials` trials of the shared study; prints the best trial and how to train it."""
    import optuna

    url = storage_url(a.storage, m.search_storage, a.logdir)
    name = a.study or m.search_study
    study = open_study(url, name)
    log(f"search: study {name!r} in {url}: {len(study.trials)} trial(s) so far; this worker runs {n_trials}")
    a.no_promote = True  # trials never touch CURRENT (they do not even export)
    pinned = pinned_settings(a)
    if pinned & SEARCHED:
        log(f"search: fixed by flags, not searched: {', '.join(sorted(pinned & SEARCHED))}")
    a.book_levels = max(a.book_levels or 0, 10, min(cfg.feed.levels, 10))

    def objective(trial) -> float:
        params = suggest(trial, cfg.feed.levels, cfg.inference.max_window, pinned)
        mt = cfg.override("model", **params).model
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        res = train(a, mt, cfg, trial=trial)
        trial.set_user_attr("val_macro_f1", res["val_macro_f1"])
        trial.set_user_attr("baseline_val_macro_f1", res["baseline_val_macro_f1"])
        trial.set_user_attr("best_epoch", res["best_epoch"])
        return res["val_margin"]

    study.optimize(objective, n_trials=n_trials, catch=(ValueError,))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        log("search: no trial completed")
        return 1
    best = study.best_trial
    flags = " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in best.params.items()
                     if k != "threshold_bps")
    if "threshold_bps" in best.params:
        flags += f" --threshold {best.params['threshold_bps']:.4g}"
    flags += "".join(f" --{k.replace('_', '-')} {shlex.quote(str(getattr(m, k)))}" for k in sorted(pinned & SEARCHED)
                     if k != "threshold_bps")
    if "threshold_bps" in pinned:
        flags += f" --threshold {m.threshold_bps:g}"
    data = " ".join(shlex.quote(d) for d in a.data) if a.data else ""
    log(f"search: best of {len(done)} completed trial(s) (#{best.number}): validation margin over the best "
        f"baseline {best.value:+.4f}, validation macro-F1 {best.user_attrs.get('val_macro_f1', float('nan')):.4f}")
    log(f"search: train it with: python training/train.py{' --data ' + data if data else ''} {flags}")
    out = Path(a.logdir) / f"search-{name}-best.json"
    out.write_text(json.dumps({"study": name, "storage": url, "trial": best.number, "value": best.value,
                               "params": best.params, "user_attrs": best.user_attrs,
                               "model_settings": asdict(m)}, indent=1))
    print(json.dumps({"study": name, "completed": len(done), "best_value": best.value, "best_params": best.params}),
          file=sys.stdout, flush=True)
    return 0
