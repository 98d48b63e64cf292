"""Train DeepLOB on recordings and drop a verified checkpoint into `checkpoints/`.

    python training/train.py [--data DIR ...] [--gpu] [--epochs N] [--horizon K] [--threshold BPS|cost]
                             [--out checkpoints/] [--logdir runs/] [--seed S] [--resume RUN|last]
                             [--no-promote] [--config FILE] [--<any [model] field> VALUE]
    torchrun --nproc_per_node=N training/train.py ...      # DDP (gloo on CPU, nccl on CUDA)
    python training/train.py --watch --every 6h ...         # retrain, gate, promote, retire, repeat
    python training/train.py --search 20 [--storage URL]    # Optuna over features and model

Reads top to bottom: config, data, model, loop, evaluation (the model and the baselines on the
same test windows), export (promotion gate, checkpoint, CURRENT). The reusable parts live in
`hftbot.model` (dataset, labels, baselines, metrics, gate, search, retrain) so the backtester and
the walk-forward use the same code; docs/training.md explains the decisions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hftbot.atomic import write_bytes_atomic
from hftbot.config import ConfigError, ModelConfig, load_config
from hftbot.model import baselines as bl
from hftbot.model import dataset as ds
from hftbot.model.checkpoint import Compat, load_checkpoint, set_current, write_checkpoint
from hftbot.model.deeplob import DeepLOB, count_parameters
from hftbot.model.features import FeatureSpec
from hftbot.model.gate import run_gate, torch_model_fn
from hftbot.model.labels import (
    LabelRule,
    balance_text,
    class_counts,
    class_weights,
    classify,
    cost_threshold_bps,
    half_spread_bps,
)
from hftbot.model.metrics import confusion, scores
from hftbot.model.tblog import TBLog
from hftbot.times import parse_time_ns

# ---------------------------------------------------------------------------------------- config
# The run's own values. Model, feature, label and optimisation settings are the [model] section
# (hftbot/defaults.toml documents each one; --config FILE or HFTBOT_MODEL__<NAME> change them) and
# every one of them is also a flag (--window, --horizon, --lr, ...): one definition per setting.
data: list[str] = []   # --data: recording folders/files; empty = <runtime.data_dir>/recordings
symbol = ""            # --symbol / --source: choose one when the folders hold several
source = ""
out = ""               # --out: checkpoint folder; "" = runtime.checkpoints_dir
logdir = "runs"        # --logdir: TensorBoard runs go to <logdir>/<run>/
run_name = ""          # "" = <UTC time>-s<seed>
seed = 1
gpu = False            # --gpu: CUDA with bf16 autocast, or a clear error; default: the best device there is
resume = ""            # --resume RUN_DIR | last: continue a run from its last saved epoch
no_promote = False     # write the checkpoint, never move CURRENT
force_promote = False  # move CURRENT even when the current model cannot be scored on this data
note = ""              # --note: appended to the checkpoint's note (e.g. how the data was made)
book_levels = 0        # levels to rebuild raw recordings with; 0 = max(levels, 10)
data_start = ""        # --data-start / --data-end: train on the records received in [start, end) only
data_end = ""          # (ISO-8601 UTC or ns since the epoch; the walk-forward's "past"); "" = unbounded

MODEL_FLAGS = {f.name for f in fields(ModelConfig)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="training/train.py", description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=data, help="recording folders or files (any layout)")
    ap.add_argument("--symbol", default=symbol)
    ap.add_argument("--source", default=source, choices=("", *ds.SOURCES, ds.UNKNOWN))
    ap.add_argument("--out", default=out)
    ap.add_argument("--logdir", default=logdir)
    ap.add_argument("--run-name", default=run_name)
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--gpu", action="store_true", default=gpu)
    ap.add_argument("--resume", default=resume)
    ap.add_argument("--no-promote", action="store_true", default=no_promote)
    ap.add_argument("--force-promote", action="store_true", default=force_promote)
    ap.add_argument("--note", default=note)
    ap.add_argument("--book-levels", type=int, default=book_levels)
    ap.add_argument("--data-start", default=data_start, help="use records received at or after (ISO UTC or ns)")
    ap.add_argument("--data-end", default=data_end, help="use records received before (ISO UTC or ns)")
    ap.add_argument("--config", default=None, help="hftbot config TOML (its [model] section applies)")
    ap.add_argument("--threshold", default=None, help="label threshold in bps, or 'cost' (fee + half-spread)")
    ap.add_argument("--watch", action="store_true", help="retrain on a schedule (see --every)")
    ap.add_argument("--every", default=None, help="--watch period, e.g. 6h, 30m (default [model] retrain_every)")
    ap.add_argument("--watch-runs", type=int, default=0, help="--watch: stop after this many retrains (0: never)")
    ap.add_argument("--search", type=int, default=0, metavar="N", help="run N Optuna trials (validation only)")
    ap.add_argument("--storage", default=None, help="Optuna storage URL (default [model] search_storage)")
    ap.add_argument("--study", default=None)
    ap.add_argument("--trial-epochs", type=int, default=0, help="--search: epochs per trial (0: [model] epochs)")
    for f in fields(ModelConfig):
        if f.name == "threshold_bps":
            continue
        kind = {int: int, float: float}.get(type(f.default), str)
        ap.add_argument(f"--{f.name.replace('_', '-')}", dest=f"model_{f.name}", type=kind, default=None)
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    return a


def model_settings(a: argparse.Namespace) -> tuple[ModelConfig, object]:
    """[model] from defaults < --config file < HFTBOT_MODEL__* < flags, validated by hftbot.config."""
    cfg = load_config(a.config)
    over = {k[len("model_"):]: v for k, v in vars(a).items() if k.startswith("model_") and v is not None}
    if a.threshold is not None:
        if a.threshold == "cost":
            over["threshold_mode"] = "cost"
        else:
            try:
                over["threshold_bps"] = float(a.threshold)
            except ValueError:
                raise ConfigError(f"config: --threshold must be a number of bps or 'cost', "
                                  f"got {a.threshold!r}") from None
            over["threshold_mode"] = "fixed"
    cfg = cfg.override("model", **over) if over else cfg
    return cfg.model, cfg


# ---------------------------------------------------------------------------------------- DDP


def ddp_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when run plainly."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t


def barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def pick_device(want_gpu: bool, local_rank: int) -> torch.device:
    if want_gpu:
        if not torch.cuda.is_available():
            raise SystemExit(f"train: --gpu needs a CUDA device, and torch.cuda.is_available() is False "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                             f"run without --gpu to train on the CPU")
        return torch.device("cuda", local_rank)
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


# ---------------------------------------------------------------------------------------- train


def train(a: argparse.Namespace, m: ModelConfig, cfg, trial=None) -> dict:
    """One training run; returns its result (metrics, checkpoint path, gate decision)."""
    rank, world, local_rank = ddp_env()
    device = pick_device(a.gpu, local_rank)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if m.threads:
        torch.set_num_threads(m.threads)
    lead = rank == 0
    say = print if lead else (lambda *_, **__: None)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    torch.manual_seed(a.seed)

    # ------------------------------------------------------------------------------------ data
    paths = a.data or [str(Path(cfg.runtime.data_dir) / "recordings")]
    levels_rebuilt = a.book_levels or max(m.levels, 10)
    rec = None
    if lead:  # rank 0 rebuilds and caches; the others then find every cache in place
        rec = ds.open_recordings(paths, levels_rebuilt, a.symbol or None, a.source or None, log=say)
    barrier(world)
    if not lead:
        rec = ds.open_recordings(paths, levels_rebuilt, a.symbol or None, a.source or None, log=lambda s: None)
    if a.data_start or a.data_end:
        rec = rec.between(parse_time_ns(a.data_start, "--data-start"), parse_time_ns(a.data_end, "--data-end"))
    rec = rec.newest(m.train_days)
    say(f"data: {ds.dataset_summary(rec)}")
    spec = FeatureSpec(m.levels, m.window, m.price_ref)
    rule = LabelRule(m.horizon, m.threshold_bps, m.label_rule)
    budget = m.cache_mb << 20
    parts = ds.chunk_parts(rec, ds.max_chunk(spec, rule, budget, ds.DEFAULT_CHUNK_RECORDS))
    split = ds.split_by_time(rec, parts, spec, rule, m.val_frac, m.test_frac)
    spread = train_half_spread(rec, split.train)
    cost_bps = cost_threshold_bps(cfg.exec.taker_fee, spread)  # the fee execution decides with
    if m.threshold_mode == "cost":
        rule = LabelRule(m.horizon, cost_bps, m.label_rule)
    counts, cost_counts = {}, {}
    for k in ("train", "val", "test"):  # one pass per period, part by part (memory stays bounded)
        counts[k], cost_counts[k] = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
        for p in getattr(split, k):
            ch = ds.load_part(rec, p, spec, rule, rows=False).change
            counts[k] += class_counts(classify(ch, rule.threshold_bps))
            cost_counts[k] += class_counts(classify(ch, cost_bps))
    say(f"split (time order, {split.gap}-record gaps): " + ", ".join(
        f"{k} {split.counts[k]:,} windows {ds.iso_utc(split.bounds[k][0])[:19]}.."
        f"{ds.iso_utc(split.bounds[k][1])[11:19]}"
        for k in ("train", "val", "test")))
    say(f"labels: {rule.rule}, horizon {rule.horizon} events, threshold {rule.threshold_bps:g} bp "
        f"(cost threshold {cost_bps:.2f} bp = 2 x {cfg.exec.taker_fee * 1e4:g} bp taker fee + {spread:.2f} bp "
        f"half-spread)")
    for k in ("train", "val", "test"):
        say(f"  {k:5s} at {rule.threshold_bps:g} bp: {balance_text(counts[k])}   "
            f"at cost: {balance_text(cost_counts[k])}")
    weights = class_weights(counts["train"])
    if np.count_nonzero(counts["train"]) < 3:
        say(f"warning: a class has no training window at {rule.threshold_bps:g} bp; it cannot be learnt")

    # the normalisation is fitted on the training period only and frozen into the checkpoint
    state_path, run_dir, start_epoch, saved = resume_state(a, lead)
    if saved is not None:
        spec = FeatureSpec.from_dict(saved["features"])
        if saved["split_counts"] != split.counts:
            raise SystemExit(f"train: --resume {run_dir}: the data changed since the run began "
                             f"(windows per split {saved['split_counts']} then, {split.counts} now)")
    else:
        mean, std = ds.fit_stats(rec, split.train, spec, rule)
        spec = spec.with_stats(mean, std)
    cache = ds.PartCache(lambda p: ds.load_part(rec, p, spec, rule), budget)

    # ------------------------------------------------------------------------------------ model
    model = DeepLOB(m.levels, m.window, m.conv_filters, m.inception_filters, m.lstm_hidden, m.padding).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=m.lr, eps=m.adam_eps, weight_decay=m.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=max(1, m.patience // 2))
    best = {"macro_f1": -1.0, "epoch": -1}
    best_state = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        best, best_state = saved["best"], saved["best_model"]
        torch.set_rng_state(saved["torch_rng"])
        say(f"resumed {run_dir} at epoch {start_epoch} (best validation macro-F1 {best['macro_f1']:.4f})")
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    loss_weight = torch.tensor(weights if m.class_balance == "weights" else np.ones(3), dtype=torch.float32,
                               device=device)
    class_probs = None
    if m.class_balance == "sampling":
        def class_probs(change: np.ndarray) -> np.ndarray:
            return weights[classify(change, rule.threshold_bps).astype(np.int64)]
    say(f"model: DeepLOB levels {m.levels}, window {m.window}, filters {m.conv_filters}/{m.inception_filters}, "
        f"LSTM {m.lstm_hidden}, padding {m.padding}: {count_parameters(model):,} parameters on {device}"
        + (f" x {world} processes" if world > 1 else ""))
    tb = TBLog(str(run_dir) if lead and trial is None else None)

    def evaluate(split_parts, stride: int = 1) -> tuple[dict, float, np.ndarray]:
        """Scores, mean loss and confusion over a period (this rank's share, then summed)."""
        net.eval()
        cm = torch.zeros(3, 3, dtype=torch.int64)
        loss_sum = torch.zeros(2, dtype=torch.float64)
        with torch.inference_mode(), amp:
            for b in ds.eval_batches(rec, split_parts, spec, rule, 512, rank, world, stride, cache):
                y = torch.from_numpy(classify(b.change, rule.threshold_bps).astype(np.int64)).to(device)
                logits = model(torch.from_numpy(b.x).to(device)).float()
                loss_sum += torch.tensor([F.cross_entropy(logits, y, weight=loss_weight, reduction="sum").item(),
                                          float(loss_weight[y].sum())], dtype=torch.float64)
                cm += torch.from_numpy(confusion(y.cpu().numpy(), logits.argmax(1).cpu().numpy()))
        cm = all_sum(cm, world)
        loss_sum = all_sum(loss_sum, world)
        return scores(cm.numpy()), float(loss_sum[0] / max(loss_sum[1], 1e-12)), cm.numpy()

    base_val = 0.0
    if trial is not None:  # a trial is judged by what it adds over the baselines on validation
        base = run_baselines(rec, split.train, split.val, spec, rule, rule, weights, m.baseline_fit_windows, a.seed)
        base_val = max(v["test"]["macro_f1"] for v in base.values())
        say(f"search: best baseline validation macro-F1 {base_val:.4f}")

    # ------------------------------------------------------------------------------------ loop
    val_stride = max(1, math.ceil(split.counts["val"] / m.val_windows)) if m.val_windows else 1
    per_epoch = min(split.counts["train"], m.epoch_windows or split.counts["train"])
    epochs = (a.trial_epochs or m.epochs) if trial is not None else m.epochs
    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        net.train()
        t0 = time.perf_counter()
        seen, loss_sum, cm = 0, 0.0, np.zeros((3, 3), dtype=np.int64)
        batches = ds.train_batches(split.train, cache, spec, rule, m.batch_size, a.seed, epoch, rank, world,
                                   class_probs, m.epoch_windows)
        with progress(lead and trial is None, f"epoch {epoch + 1}/{epochs}", per_epoch // world) as bar:
            for b in batches:
                x = torch.from_numpy(b.x).to(device, non_blocking=True)
                y = torch.from_numpy(classify(b.change, rule.threshold_bps).astype(np.int64)).to(device)
                with amp:
                    logits = net(x)
                    loss = F.cross_entropy(logits.float(), y, weight=loss_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                seen += len(y)
                loss_sum += float(loss.detach()) * len(y)
                cm += confusion(y.cpu().numpy(), logits.argmax(1).cpu().numpy())
                bar(len(y))
        dt = time.perf_counter() - t0
        train_scores = scores(cm)
        val_scores, val_loss, val_cm = evaluate(split.val, val_stride)
        sched.step(val_scores["macro_f1"])
        improved = val_scores["macro_f1"] > best["macro_f1"]
        if improved:
            best = {"macro_f1": val_scores["macro_f1"], "accuracy": val_scores["accuracy"], "epoch": epoch + 1}
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        say(f"epoch {epoch + 1}: train loss {loss_sum / max(seen, 1):.4f} macro-F1 {train_scores['macro_f1']:.4f} | "
            f"val loss {val_loss:.4f} acc {val_scores['accuracy']:.4f} macro-F1 {val_scores['macro_f1']:.4f}"
            f"{' *' if improved else ''} | {seen * world / dt:,.0f} windows/s, lr {opt.param_groups[0]['lr']:.2g}")
        tb.scores("train", train_scores, epoch + 1, loss_sum / max(seen, 1))
        tb.scores("val", val_scores, epoch + 1, val_loss)
        tb.confusion("val/confusion", val_cm, epoch + 1)
        tb.scalar("train/lr", opt.param_groups[0]["lr"], epoch + 1)
        tb.scalar("train/windows_per_s", seen * world / dt, epoch + 1)
        if device.type == "cuda":
            tb.scalar("gpu/max_memory_mb", torch.cuda.max_memory_allocated(device) / 2**20, epoch + 1)
        if lead and trial is None:
            save_state(state_path, model, opt, sched, epoch + 1, best, best_state, spec, split.counts)
        if trial is not None:
            trial.report(val_scores["macro_f1"] - base_val, epoch)
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")
        if epoch + 1 - best["epoch"] >= m.patience:
            say(f"early stop: no better validation macro-F1 for {m.patience} epochs (best {best['macro_f1']:.4f} "
                f"at epoch {best['epoch']})")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if trial is not None:  # a search trial is judged on validation only; the test split stays unseen
        return {"val_macro_f1": best["macro_f1"], "best_epoch": best["epoch"], "baseline_val_macro_f1": base_val,
                "val_margin": best["macro_f1"] - base_val}

    # ------------------------------------------------------------------------------------ evaluation
    test_scores, _, test_cm = evaluate(split.test)
    cost_rule = LabelRule(rule.horizon, cost_bps, rule.rule)
    model_cost = evaluate_at(model, rec, split.test, spec, rule, cost_bps, device, rank, world)
    result: dict = {"val_best": best}
    if lead:
        base = run_baselines(rec, split.train, split.test, spec, rule, cost_rule, weights, m.baseline_fit_windows,
                             a.seed)
        table = {"deeplob": {"test": test_scores, "cost": scores(model_cost)}, **base}
        floor = test_scores["majority_floor"]
        best_base = max(v["test"]["macro_f1"] for k, v in base.items())
        margin = test_scores["macro_f1"] - best_base
        say(report(table, floor, rule, cost_bps, margin))
        result.update(test=test_scores, table=table, margin_macro_f1=margin)
        tb.scores("test", test_scores, epoch + 1)
        tb.confusion("test/confusion", test_cm, epoch + 1)
        for name, v in table.items():
            tb.scalar(f"test_{name}/macro_f1", v["test"]["macro_f1"], 0)
            tb.scalar(f"test_{name}/accuracy", v["test"]["accuracy"], 0)
        tb.text("test/report", "<pre>" + report(table, floor, rule, cost_bps, margin) + "</pre>")
        hp = {k: getattr(m, k) for k in ("levels", "window", "price_ref", "horizon", "label_rule", "conv_filters",
                                          "inception_filters", "lstm_hidden", "lr", "batch_size", "class_balance")}
        hp.update(threshold_bps=rule.threshold_bps, seed=a.seed)
        tb.hparams(hp, {"test_macro_f1": test_scores["macro_f1"], "test_accuracy": test_scores["accuracy"],
                        "val_macro_f1": best["macro_f1"], "margin_macro_f1": margin, "majority_floor": floor})

        # -------------------------------------------------------------------------------- export
        out_dir = Path(a.out or cfg.runtime.checkpoints_dir)
        compat = Compat(cfg.feed.levels, cfg.inference.max_window)
        from hftbot.model import gate as gate_mod

        scorers = dict(gate_mod.SCORERS)
        pnl_ok, why = register_pnl_scorer(cfg, rec)
        if not pnl_ok:
            say(f"gate: {why}")
        try:
            decision = run_gate(torch_model_fn(model.cpu().eval()), spec, rec, split.test, rule, out_dir, compat,
                                m.promote_min_delta, a.force_promote)
        finally:  # this run's data only: nothing left registered for the next caller
            gate_mod.SCORERS.clear()
            gate_mod.SCORERS.update(scorers)
        if a.no_promote:
            decision.promote, decision.reason = False, f"--no-promote (the gate said: {decision.reason})"
        say(decision.text())
        first_val = next(ds.eval_batches(rec, split.val, spec, rule, 1))  # a real window: the self-test
        labels = {**rule.to_dict(), "cost_threshold_bps": cost_bps, "half_spread_bps": spread,
                  "cost_taker_fee": cfg.exec.taker_fee, "threshold_mode": m.threshold_mode,
                  "class_balance": {k: counts[k].tolist() for k in counts},
                  "class_balance_at_cost": {k: cost_counts[k].tolist() for k in cost_counts},
                  "balance_handling": m.class_balance}
        metrics = {"test": {k: v["test"] for k, v in table.items()},
                   "test_at_cost_threshold": {k: v["cost"] for k, v in table.items()},
                   "majority_floor": floor, "margin_macro_f1_over_best_baseline": margin,
                   "val_best": best}
        training = {"command": "python training/train.py " + shlex.join(a.argv), "seed": a.seed, "note": a.note,
                    "world_size": world, "device": str(device), "run_dir": str(run_dir),
                    "epochs_run": epoch + 1, "best_epoch": best["epoch"],
                    "settings": asdict(m), "torch_threads": torch.get_num_threads()}
        model.cpu().float()
        meta = write_checkpoint(model, spec, out_dir, trained=True, flip=False, seed=a.seed,
                                note=f"trained by training/train.py on {rec.symbol} ({rec.source}) "
                                     f"{ds.iso_utc(rec.files[0].first_ns)[:10]}..{ds.iso_utc(rec.files[-1].last_ns)[:10]}"
                                     + (f"; {a.note}" if a.note else ""),
                                labels=labels, data=ds.data_range(rec, split), metrics=metrics,
                                self_test_input=first_val.x[0],
                                extra={"training": training, "gate": decision.to_dict()})
        load_checkpoint(meta, compat)  # what the inference process will do: refuse to promote what fails
        if decision.promote:
            set_current(out_dir, meta.name)
            say(f"checkpoint {meta} written; {out_dir / 'CURRENT'} -> {meta.name}")
        else:
            say(f"checkpoint {meta} written; CURRENT unchanged")
        result.update(checkpoint=str(meta), promoted=decision.promote, gate=decision.to_dict())
        write_bytes_atomic(run_dir / "result.json", json.dumps(result, indent=1, default=float).encode())
    tb.close()
    barrier(world)
    return result


def evaluate_at(model, rec, parts, spec, rule, threshold_bps, device, rank, world) -> np.ndarray:
    """The model's test confusion against labels at another threshold (the cost-tied one)."""
    cm = torch.zeros(3, 3, dtype=torch.int64)
    model.eval()
    with torch.inference_mode():
        for b in ds.eval_batches(rec, parts, spec, rule, 512, rank, world):
            pred = model(torch.from_numpy(b.x).to(device)).argmax(1).cpu().numpy()
            cm += torch.from_numpy(confusion(classify(b.change, threshold_bps), pred))
    return all_sum(cm, world).numpy()


def register_pnl_scorer(cfg, rec) -> tuple[bool, str]:
    """The gate also needs the candidate's net PnL better (the backtester trading its held-out
    probabilities, hftbot.backtest.scorer) when the backtester is importable and the data has raw frames."""
    try:
        from hftbot.backtest.scorer import register
    except ImportError as e:  # pragma: no cover - the backtester ships with the package
        return False, f"backtester not importable ({e}): the gate decides on macro-F1 alone"
    return register(cfg, rec)


def train_half_spread(rec, parts) -> float:
    """Median half-spread (bps) over the training period: the median of each part's median."""
    meds = []
    for p in parts:
        recs = np.asarray(rec.files[p.file].open()[p.lo:p.hi])
        with contextlib.suppress(ValueError):  # a part without a usable record has no spread
            meds.append(half_spread_bps(recs))
    if not meds:
        raise ds.DatasetError("dataset: the training period has no usable book record")
    return float(np.median(meds))


def run_baselines(rec, train_parts, eval_parts, spec, rule, cost_rule, weights, fit_windows: int,
                  seed_: int) -> dict:
    """Majority, queue-imbalance LR and MLOFI LR: fitted on (a sample of at most `fit_windows`)
    training windows, scored part by part on every window of the evaluation period."""
    rng = np.random.default_rng(seed_)
    n_train = sum(len(ds.load_part(rec, p, spec, rule, rows=False).ends) for p in train_parts)
    share = min(1.0, fit_windows / max(n_train, 1))
    xs, ys = [], []
    for p in train_parts:
        d = ds.load_part(rec, p, spec, rule, rows=False, records=True)
        keep = np.flatnonzero(rng.random(len(d.ends)) < share)
        xs.append({k: v[keep] for k, v in bl.features_at(d.records, d.ends - d.base, spec.levels, spec.window).items()})
        ys.append(classify(d.change[keep], rule.threshold_bps))
    tx = {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}
    models = bl.fit_baselines(tx, np.concatenate(ys).astype(np.int64), weights)
    cm = {k: np.zeros((3, 3), dtype=np.int64) for k in models}
    cm_cost = {k: np.zeros((3, 3), dtype=np.int64) for k in models}
    for p in eval_parts:
        d = ds.load_part(rec, p, spec, rule, rows=False, records=True)
        if not len(d.ends):
            continue
        preds = bl.predict_baselines(models, bl.features_at(d.records, d.ends - d.base, spec.levels, spec.window),
                                     len(d.ends))
        y, y_cost = classify(d.change, rule.threshold_bps), classify(d.change, cost_rule.threshold_bps)
        for k, pr in preds.items():
            cm[k] += confusion(y, pr)
            cm_cost[k] += confusion(y_cost, pr)
    return {k: {"test": scores(cm[k]), "cost": scores(cm_cost[k])} for k in models}


def report(table: dict, floor: float, rule: LabelRule, cost_bps: float, margin: float) -> str:
    lines = [f"test period: majority-class floor (accuracy of always the commonest class) {floor:.4f}",
             f"{'predictor':22s} {'accuracy':>9s} {'macro-F1':>9s}   at cost {cost_bps:.2f} bp: {'accuracy':>9s} "
             f"{'macro-F1':>9s}", "-" * 84]
    for name, v in table.items():
        t, c = v["test"], v["cost"]
        lines.append(f"{name:22s} {t['accuracy']:9.4f} {t['macro_f1']:9.4f}   {'':>16s} {c['accuracy']:9.4f} "
                     f"{c['macro_f1']:9.4f}")
    lines.append(f"DeepLOB macro-F1 minus the best baseline's: {margin:+.4f} (labels at {rule.threshold_bps:g} bp)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- state


def resume_state(a, lead: bool) -> tuple[Path, Path, int, dict | None]:
    """(state file, run dir, first epoch, saved state or None) for a new or a resumed run."""
    root = Path(a.logdir)
    if a.resume:
        run_dir = Path(a.resume)
        if a.resume == "last":
            runs = sorted((p for p in root.glob("*/state.pt")), key=lambda p: p.stat().st_mtime)
            if not runs:
                raise SystemExit(f"train: --resume last: no run with a saved state under {root}")
            run_dir = runs[-1].parent
        state_path = run_dir / "state.pt"
        if not state_path.exists():
            raise SystemExit(f"train: --resume {a.resume}: {state_path} does not exist")
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        return state_path, run_dir, int(saved["epoch"]), saved
    name = a.run_name or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-s{a.seed}"
    run_dir = root / name
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir / "state.pt", run_dir, 0, None


def save_state(path: Path, model, opt, sched, epoch: int, best: dict, best_state, spec: FeatureSpec,
               split_counts: dict) -> None:
    """Everything `--resume` needs, written atomically after every epoch."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch,
                "best": best, "best_model": best_state, "features": spec.to_dict(), "split_counts": split_counts,
                "torch_rng": torch.get_rng_state()}, buf)
    write_bytes_atomic(path, buf.getvalue())


@contextlib.contextmanager
def progress(show: bool, what: str, total: int):
    """A progress bar on a terminal (rich); a no-op elsewhere (logs, CI, DDP workers)."""
    if not (show and sys.stderr.isatty()):
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as p:
        task = p.add_task(what, total=total)
        yield lambda n: p.advance(task, n)


# ---------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        m, cfg = model_settings(a)
    except ConfigError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    if a.watch:
        from hftbot.model import retrain

        try:
            return retrain.watch(a.argv, a.every or m.retrain_every, Path(a.out or cfg.runtime.checkpoints_dir),
                                 m.retire_after_days, script=Path(__file__).resolve(), max_runs=a.watch_runs)
        except ValueError as e:
            print(f"train: {e}", file=sys.stderr)
            return 2
    if a.search:
        from hftbot.model import search

        return search.run(a, m, cfg, train, n_trials=a.search)
    try:
        train(a, m, cfg)
    except (ds.DatasetError, ValueError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
