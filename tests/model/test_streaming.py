"""The cached/streaming forward equals the full-window PyTorch forward (≤ 1e-5), across breaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hftbot.model.deeplob import DeepLOB
from hftbot.model.streaming import StreamingDeepLOB


def _pair(padding: str, window: int, c: int = 16, i: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    m = DeepLOB(levels=10, window=window, conv_filters=c, inception_filters=i, padding=padding).eval()
    state = {k: v.numpy() for k, v in m.state_dict().items()}
    return m, StreamingDeepLOB(state, window, padding)


def _torch_logits(m, win: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return m(torch.from_numpy(np.ascontiguousarray(win))[None])[0].numpy()


@pytest.mark.parametrize("padding", ["valid", "causal"])
def test_streaming_equals_full_window_forward_every_tick(padding):
    w = 100
    m, s = _pair(padding, w)
    rows = np.random.default_rng(2).standard_normal((w + 60, 40)).astype(np.float32)
    worst = 0.0
    for t, r in enumerate(rows):
        s.push_row(r)
        if t + 1 >= w:
            win = rows[t + 1 - w : t + 1]
            worst = max(worst, float(np.abs(s.logits(win) - _torch_logits(m, win)).max()))
    assert worst <= 1e-5


def test_streaming_restarts_exactly_after_a_reset():
    w = 30
    m, s = _pair("valid", w, c=4, i=8, seed=3)
    rng = np.random.default_rng(4)
    before = rng.standard_normal((45, 40)).astype(np.float32) * 5
    after = rng.standard_normal((w, 40)).astype(np.float32)
    for r in before:
        s.push_row(r)
    s.reset()
    for r in after:
        s.push_row(r)
    assert s.count == w
    np.testing.assert_allclose(s.logits(after), _torch_logits(m, after), atol=1e-5)


@pytest.mark.parametrize("padding", ["same", "causal", "valid"])
def test_full_window_numba_path_equals_torch(padding):
    m, s = _pair(padding, 40, c=8, i=8, seed=5)
    win = np.random.default_rng(6).standard_normal((40, 40)).astype(np.float32)
    np.testing.assert_allclose(s.full_logits(win), _torch_logits(m, win), atol=1e-5)
    for r in win:
        s.push_row(r)
    np.testing.assert_allclose(s.logits(win), _torch_logits(m, win), atol=1e-5)
