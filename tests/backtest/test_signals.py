"""Batched signals (point 2) equal what the streaming inference engine publishes for the same updates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hftbot.backtest.engine import run_backtest
from hftbot.backtest.signals import SignalSource, compute_signals, no_model, record_chunks
from hftbot.config import load_config
from hftbot.model.checkpoint import load_checkpoint, write_checkpoint
from hftbot.model.deeplob import DeepLOB
from hftbot.model.engine import InferenceEngine, ModelRuntime
from hftbot.model.features import FeatureSpec, fit_normalisation, rows_from_records
from hftbot.records import SIGNAL_NO_MODEL, SIGNAL_WARMUP

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"
CAPTURE_START_NS = 1723161254_000_000_000  # a little before the capture's first frame
W = 30
LABELS = {"classes": ["down", "flat", "up"], "horizon": 20, "threshold": 1e-4, "threshold_bps": 1.0,
          "rule": "next_vs_prev"}


@pytest.fixture(scope="module")
def books():
    return np.concatenate([b for b, _ in record_chunks([CAPTURE], 10, 1 << 20)])


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory, books):
    torch.manual_seed(3)
    model = DeepLOB(levels=10, window=W, conv_filters=4, inception_filters=8, padding="causal")
    raw, _ = rows_from_records(books[:2000], FeatureSpec(levels=10, window=W))
    mean, std = fit_normalisation(raw)
    spec = FeatureSpec(levels=10, window=W).with_stats(mean, std)
    return write_checkpoint(model, spec, tmp_path_factory.mktemp("ckpt"), trained=False, labels=LABELS)


def streaming(ckpt, books) -> tuple[np.ndarray, np.ndarray]:
    """What the inference process publishes per book record: its engine, one record at a time."""
    eng = InferenceEngine(levels=10)
    eng.runtime = ModelRuntime(ckpt)
    probs = np.zeros((len(books), 3), np.float32)
    flags = np.zeros(len(books), np.int64)
    for i in range(len(books)):
        rec = books[i : i + 1].reshape(())
        eng.push(rec)
        s = eng.signal(rec, 0)
        probs[i] = (s["p_down"], s["p_flat"], s["p_up"])
        flags[i] = s["flags"]
    return probs, flags


@pytest.mark.parametrize("method", ["batched", "streaming"])
def test_signals_computed_up_front_equal_the_streaming_engine(ckpt_path, books, method):
    """Both ways of computing them (TorchScript batches; the live engine record by record, the
    CPU default) give what the inference process publishes for the same records."""
    ckpt = load_checkpoint(ckpt_path)
    # small chunks: the windows and the features' reference mid carry across chunk ends
    src = compute_signals([CAPTURE], ckpt, device="cpu", batch=512, chunk_frames=7000, infer_ns=0, method=method)
    assert src.model_id == ckpt.model_id
    assert np.array_equal(src.book_recv_ns, np.sort(books["recv_ns"], kind="stable"))
    order = np.argsort(books["recv_ns"], kind="stable")
    p_live, f_live = streaming(ckpt, books[order])
    assert np.array_equal(src.flags, f_live)
    ok = src.flags == 0
    assert ok.sum() > 0.9 * len(books)  # warm-up only at the start and after resyncs
    assert (f_live[~ok] == SIGNAL_WARMUP).all() and np.isnan(src.probs[~ok]).all()
    np.testing.assert_allclose(src.probs[ok], p_live[ok], atol=2e-5 if method == "batched" else 0, rtol=0)
    # realised labels at the checkpoint's horizon, -1 only where the horizon runs out
    assert (src.labels[ok] >= 0).mean() > 0.9 and set(np.unique(src.labels)) <= {-1, 0, 1, 2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CPU path above is the tested one")
def test_cuda_batches_equal_the_cpu_ones(ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    cpu = compute_signals([CAPTURE], ckpt, device="cpu", chunk_frames=20_000, infer_ns=0, method="batched")
    gpu = compute_signals([CAPTURE], ckpt, device="cuda", chunk_frames=20_000, infer_ns=0)
    assert np.array_equal(cpu.flags, gpu.flags)
    ok = cpu.flags == 0
    np.testing.assert_allclose(gpu.probs[ok], cpu.probs[ok], atol=1e-4, rtol=0)


def test_auto_takes_the_live_engine_on_the_cpu_and_batches_on_cuda(ckpt_path):
    from hftbot.backtest.signals import BatchedModel, StreamingModel, signal_model

    ckpt = load_checkpoint(ckpt_path)
    assert isinstance(signal_model(ckpt, 10, "cpu"), StreamingModel)
    assert isinstance(signal_model(ckpt, 10, "cpu", method="batched"), BatchedModel)
    assert isinstance(signal_model(ckpt, 10, "auto"), BatchedModel if torch.cuda.is_available() else StreamingModel)
    with pytest.raises(ValueError, match="backtest.signals"):
        signal_model(ckpt, 10, "cpu", method="fast")
    with pytest.raises(Exception, match="signals"):
        load_config(env={"HFTBOT_BACKTEST__SIGNALS": "fast"})


def test_deeplob_backtest_runs_on_a_checkpoint_and_reports_its_signals(ckpt_path):
    cfg = load_config(env={}).override("backtest", device="cpu", inference_latency_us=150.0)
    r = run_backtest([CAPTURE], strategy="deeplob", checkpoint=ckpt_path, cfg=cfg,
                     end_ns=int(CAPTURE_START_NS) + 60 * 10**9)
    assert r.settings["inference_latency_ns"] == 150_000
    assert len(r.signals) > 500
    assert np.isfinite(r.signals["p_up"]).all()
    assert np.allclose(r.signals["p_down"] + r.signals["p_flat"] + r.signals["p_up"], 1.0, atol=1e-5)


def test_without_a_checkpoint_deeplob_sees_no_model_and_trades_nothing():
    cfg = load_config(env={})
    r = run_backtest([CAPTURE], strategy="deeplob", cfg=cfg, end_ns=int(CAPTURE_START_NS) + 30 * 10**9)
    assert r.orders == 0 and len(r.signals) == 0 and r.events > 0


def test_signal_source_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="probs"):
        SignalSource(np.arange(3), np.zeros((2, 3), np.float32), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="ascending"):
        SignalSource(np.array([3, 1]), np.zeros((2, 3), np.float32), np.zeros(2, np.int64))
    s = SignalSource.from_probs(np.array([10, 20]), np.array([[0.2, 0.3, 0.5], [np.nan] * 3]))
    assert s.flags.tolist() == [0, SIGNAL_WARMUP] and s.lookup(np.array([20, 15])).tolist() == [1, -1]
    assert no_model(np.array([5])).flags.tolist() == [SIGNAL_NO_MODEL]



def test_signals_from_the_prepared_cache_equal_those_from_the_frames(ckpt_path, tmp_path, monkeypatch) -> None:
    """A deeplob backtest decodes a recording once: the signals read the replay's prepared cache."""
    import shutil

    from hftbot.backtest import signals as sig
    from hftbot.backtest.engine import prepare_recording

    cap = tmp_path / CAPTURE.name
    shutil.copy2(CAPTURE, cap)
    ckpt = load_checkpoint(ckpt_path)
    kw = {"device": "cpu", "batch": 512, "chunk_frames": 7000, "infer_ns": 0}
    raw = compute_signals([cap], ckpt, **kw)
    cfg = load_config(env={"HFTBOT_BACKTEST__CHUNK_FRAMES": "7000"})
    assert prepare_recording([cap], cfg) is not None

    def no_decoding(*a, **k):
        raise AssertionError("the frames were decoded again")

    monkeypatch.setattr(sig, "record_chunks", no_decoding)
    cached = compute_signals([cap], ckpt, use_cache=True, **kw)
    assert np.array_equal(cached.book_recv_ns, raw.book_recv_ns) and np.array_equal(cached.flags, raw.flags)
    assert np.array_equal(cached.labels, raw.labels)
    np.testing.assert_array_equal(cached.probs, raw.probs)
