"""DeepLOB forward in numba, full-window and streaming, from a checkpoint's weights.

Why: per book update the live path must cost well under a millisecond on one CPU thread, and
eager PyTorch spends most of that dispatching ~40 tiny ops. This is the same arithmetic as
`hftbot.model.deeplob.DeepLOB` (float32), checked equal to it at every checkpoint load.

The streaming path repeats no work across ticks:
- each conv layer keeps the last k rows of its input; a new book row costs one output row per
  layer (~80k multiply-adds at 16/32 filters) and one LSTM input projection (W_ih·x + b);
- those projections are cached per row in a ring, so a tick runs only the LSTM recurrence
  (W_hh·h, the part that cannot be cached: the window's LSTM starts from zero at its first row,
  which moves every tick);
- with "causal" padding the first `HEAD` = 22 positions of a window see the zero padding, so they
  are recomputed from the window's first 22 rows each tick (exact, and small); with "valid"
  padding the LSTM reads only cached rows; "same" padding lets the newest rows see padding after
  them, so it has no streaming form and runs the full window (`full_logits`) every tick.

Exactness: `StreamingDeepLOB.logits()` equals `DeepLOB.forward()` on the same window to float32
rounding (tested ≤ 1e-5). This module does no I/O and knows nothing of records or rings.
"""

from __future__ import annotations

import math

import numba
import numpy as np

RECEPTIVE = 23  # rows one LSTM input depends on (see DeepLOB.receptive_field_rows)
HEAD = RECEPTIVE - 1  # window positions that see the left padding in "causal" mode
_PAD_CODE = {"valid": 0, "causal": 1, "same": 2}


# ---------------------------------------------------------------- numba kernels (float32 in/out)


# Layout: activations are channel-last (T, Wd, C) and weights (k, Cin, Cout), so every inner loop
# is a contiguous multiply-add over output channels that LLVM vectorises (AVX2/AVX-512).


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _tanh(x):  # pragma: no cover - compiled
    """float32 tanh, Eigen's rational approximation (a few ulp): branch-free, so it vectorises."""
    x = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _spatial(x, w, b, stride):  # pragma: no cover - compiled
    """(T, Win, Cin) -> (T, Wout, Cout): a 1×kw conv (stride along columns) + LeakyReLU."""
    t_len, w_in, c_in = x.shape
    kw, _, c_out = w.shape
    w_out = (w_in - kw) // stride + 1
    out = np.empty((t_len, w_out, c_out), dtype=np.float32)
    for t in range(t_len):
        for j in range(w_out):
            acc = out[t, j]
            acc[:] = b
            for k in range(kw):
                for i in range(c_in):
                    xv = x[t, j * stride + k, i]
                    for o in range(c_out):
                        acc[o] += w[k, i, o] * xv
            for o in range(c_out):
                a = acc[o]
                acc[o] = a if a > 0 else np.float32(0.01) * a
    return out


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _time(x, w, b, before, after):  # pragma: no cover - compiled
    """(T, Wd, Cin) -> (T + before + after - k + 1, Wd, Cout): a k×1 conv, zero padded, + LeakyReLU."""
    t_len, wd, c_in = x.shape
    k, _, c_out = w.shape
    t_out = t_len + before + after - k + 1
    out = np.empty((t_out, wd, c_out), dtype=np.float32)
    for to in range(t_out):
        for j in range(wd):
            acc = out[to, j]
            acc[:] = b
            for kk in range(k):
                ti = to + kk - before
                if ti < 0 or ti >= t_len:
                    continue
                for i in range(c_in):
                    xv = x[ti, j, i]
                    for o in range(c_out):
                        acc[o] += w[kk, i, o] * xv
            for o in range(c_out):
                a = acc[o]
                acc[o] = a if a > 0 else np.float32(0.01) * a
    return out


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _maxpool3(x, before, after):  # pragma: no cover - compiled
    """3×1 max-pool along time, stride 1; padding never wins (it is -inf)."""
    t_len, wd, c = x.shape
    t_out = t_len + before + after - 2
    out = np.full((t_out, wd, c), -np.inf, dtype=np.float32)
    for to in range(t_out):
        for kk in range(3):
            ti = to + kk - before
            if ti < 0 or ti >= t_len:
                continue
            for j in range(wd):
                for i in range(c):
                    v = x[ti, j, i]
                    if v > out[to, j, i]:
                        out[to, j, i] = v
    return out


@numba.njit(cache=True, nogil=True)
def _pads(k, mode):  # pragma: no cover - compiled
    if mode == 1:
        return k - 1, 0
    if mode == 2:
        return (k - 1) // 2, (k - 1) - (k - 1) // 2
    return 0, 0


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _lstm_inputs_full(x, ws, bs, mode):  # pragma: no cover - compiled
    """(T, F) features -> (T', 3I) LSTM inputs, every layer padded by `mode` (0 valid, 1 causal, 2 same)."""
    t_len, f = x.shape
    h = np.ascontiguousarray(x).reshape(t_len, f, 1)
    p4b, p4a = _pads(4, mode)
    p3b, p3a = _pads(3, mode)
    p5b, p5a = _pads(5, mode)
    h = _spatial(h, ws[0], bs[0], 2)
    h = _time(_time(h, ws[1], bs[1], p4b, p4a), ws[2], bs[2], p4b, p4a)
    h = _spatial(h, ws[3], bs[3], 2)
    h = _time(_time(h, ws[4], bs[4], p4b, p4a), ws[5], bs[5], p4b, p4a)
    h = _spatial(h, ws[6], bs[6], 1)
    h = _time(_time(h, ws[7], bs[7], p4b, p4a), ws[8], bs[8], p4b, p4a)
    c3 = _time(_spatial(h, ws[9], bs[9], 1), ws[10], bs[10], p3b, p3a)
    c5 = _time(_spatial(h, ws[11], bs[11], 1), ws[12], bs[12], p5b, p5a)
    c7 = _spatial(_maxpool3(h, p3b, p3a), ws[13], bs[13], 1)
    n = c5.shape[0]
    ni = c5.shape[2]
    out = np.empty((n, 3 * ni), dtype=np.float32)
    o3 = c3.shape[0] - n
    o7 = c7.shape[0] - n
    for t in range(n):
        for i in range(ni):
            out[t, i] = c3[t + o3, 0, i]
            out[t, ni + i] = c5[t, 0, i]
            out[t, 2 * ni + i] = c7[t + o7, 0, i]
    return out


@numba.njit(cache=True, nogil=True)
def _push(hist, row):  # pragma: no cover - compiled
    """Shift a (k, Wd, C) history by one and append `row` (Wd, C) as the newest."""
    k = hist.shape[0]
    for r in range(k - 1):
        hist[r] = hist[r + 1]
    hist[k - 1] = row


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _stream_step(xrow, ws, bs, hs, wih, bias, g_out):  # pragma: no cover - compiled
    """One new book row through every layer (unpadded), using and updating the histories `hs`.

    Writes W_ih·x + b for the newest LSTM input into g_out; valid once 23 rows were pushed.
    """
    f = xrow.shape[0]
    h = _spatial(np.ascontiguousarray(xrow).reshape(1, f, 1), ws[0], bs[0], 2)
    _push(hs[0], h[0])
    h = _time(hs[0], ws[1], bs[1], 0, 0)
    _push(hs[1], h[0])
    h = _spatial(_time(hs[1], ws[2], bs[2], 0, 0), ws[3], bs[3], 2)
    _push(hs[2], h[0])
    h = _time(hs[2], ws[4], bs[4], 0, 0)
    _push(hs[3], h[0])
    h = _spatial(_time(hs[3], ws[5], bs[5], 0, 0), ws[6], bs[6], 1)
    _push(hs[4], h[0])
    h = _time(hs[4], ws[7], bs[7], 0, 0)
    _push(hs[5], h[0])
    h = _time(hs[5], ws[8], bs[8], 0, 0)  # block 3 output (1, 1, C)
    _push(hs[6], _spatial(h, ws[9], bs[9], 1)[0])
    c3 = _time(hs[6], ws[10], bs[10], 0, 0)
    _push(hs[7], _spatial(h, ws[11], bs[11], 1)[0])
    c5 = _time(hs[7], ws[12], bs[12], 0, 0)
    _push(hs[8], h[0])
    c7 = _spatial(_maxpool3(hs[8], 0, 0), ws[13], bs[13], 1)
    ni = c3.shape[2]
    x = np.empty((1, 3 * ni), dtype=np.float32)
    for i in range(ni):
        x[0, i] = c3[0, 0, i]
        x[0, ni + i] = c5[0, 0, i]
        x[0, 2 * ni + i] = c7[0, 0, i]
    _project(x, wih, bias, g_out.reshape(1, g_out.shape[0]))


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _project(x, wih_t, bias, out):  # pragma: no cover - compiled
    """out[t] = W_ih · x[t] + (b_ih + b_hh), the cacheable half of every LSTM gate; wih_t is (D, 4H)."""
    n, d = x.shape
    g = wih_t.shape[1]
    for t in range(n):
        acc = out[t]
        acc[:] = bias
        for k in range(d):
            xv = x[t, k]
            for r in range(g):
                acc[r] += wih_t[k, r] * xv


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _lstm_last(ga, gb, whh_t, head_w, head_b, logits):  # pragma: no cover - compiled
    """Run the LSTM from zero state over ga then gb (rows of W_ih·x + b); whh_t is (H, 4H)."""
    hid = whh_t.shape[0]
    h = np.zeros(hid, dtype=np.float32)
    c = np.zeros(hid, dtype=np.float32)
    gates = np.empty(4 * hid, dtype=np.float32)
    half = np.float32(0.5)
    for part in range(2):
        g = ga if part == 0 else gb
        for t in range(g.shape[0]):
            gates[:] = g[t]
            k = 0
            while k + 4 <= hid:  # four rows of W_hh per pass: a quarter of the loads/stores of `gates`
                h0, h1, h2, h3 = h[k], h[k + 1], h[k + 2], h[k + 3]
                w0, w1, w2, w3 = whh_t[k], whh_t[k + 1], whh_t[k + 2], whh_t[k + 3]
                for r in range(4 * hid):
                    gates[r] += w0[r] * h0 + w1[r] * h1 + w2[r] * h2 + w3[r] * h3
                k += 4
            while k < hid:
                hv = h[k]
                for r in range(4 * hid):
                    gates[r] += whh_t[k, r] * hv
                k += 1
            for k in range(hid):  # PyTorch gate order: input, forget, cell, output; σ(x) = ½ + ½·tanh(x/2)
                ig = half + half * _tanh(half * gates[k])
                fg = half + half * _tanh(half * gates[hid + k])
                cg = _tanh(gates[2 * hid + k])
                og = half + half * _tanh(half * gates[3 * hid + k])
                c[k] = fg * c[k] + ig * cg
                h[k] = og * _tanh(c[k])
    for o in range(head_w.shape[0]):
        acc = head_b[o]
        for k in range(hid):
            acc += head_w[o, k] * h[k]
        logits[o] = acc


# ---------------------------------------------------------------- the object the engine holds

_CONV_KEYS = (
    "block1.spatial", "block1.time1.conv", "block1.time2.conv",
    "block2.spatial", "block2.time1.conv", "block2.time2.conv",
    "block3.spatial", "block3.time1.conv", "block3.time2.conv",
    "inception.reduce3", "inception.conv3.conv", "inception.reduce5", "inception.conv5.conv",
    "inception.pool_proj",
)
# input history length per streamed layer: the six 4-row convs, conv3's, conv5's, the pool's
_HIST_K = (4, 4, 4, 4, 4, 4, 3, 5, 3)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits (float64); a short 1-d vector takes a scalar path (cheaper than numpy's)."""
    if np.ndim(logits) == 1 and len(logits) <= 8:
        z = [float(v) for v in logits]
        m = max(z)
        e = [math.exp(v - m) for v in z]
        s = sum(e)
        return np.array([v / s for v in e])
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class StreamingDeepLOB:
    """DeepLOB weights in numba form, with the per-row caches of one live stream."""

    def __init__(self, state: dict[str, np.ndarray], window: int, padding: str) -> None:
        if padding not in _PAD_CODE:
            raise ValueError(f"streaming: unknown padding {padding!r}")
        self.window = int(window)
        self.padding = padding
        self.mode = _PAD_CODE[padding]
        self.streaming = padding in ("causal", "valid") and self.window >= RECEPTIVE
        f32 = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.float32))  # noqa: E731

        def conv_w(key: str) -> np.ndarray:  # (Cout, Cin, kh, kw) -> (k, Cin, Cout): one of kh, kw is 1
            w = f32(state[key + ".weight"])
            return f32(w.reshape(w.shape[0], w.shape[1], w.shape[2] * w.shape[3]).transpose(2, 1, 0))

        self.ws = tuple(conv_w(k) for k in _CONV_KEYS)
        self.bs = tuple(f32(state[k + ".bias"]) for k in _CONV_KEYS)
        self.wih = f32(np.asarray(state["lstm.weight_ih_l0"]).T)  # (D, 4H)
        self.whh = f32(np.asarray(state["lstm.weight_hh_l0"]).T)  # (H, 4H)
        self.bias = f32(np.asarray(state["lstm.bias_ih_l0"]) + np.asarray(state["lstm.bias_hh_l0"]))
        self.head_w = f32(state["fc.weight"] if "fc.weight" in state else state["head.weight"])
        self.head_b = f32(state["fc.bias"] if "fc.bias" in state else state["head.bias"])
        self.conv_filters = self.ws[0].shape[2]
        self.levels = self.ws[6].shape[0]
        self.n_features = 4 * self.levels
        c, ni, g = self.conv_filters, self.ws[9].shape[2], self.wih.shape[1]
        widths = (2 * self.levels, 2 * self.levels, self.levels, self.levels, 1, 1, 1, 1, 1)
        chans = (c, c, c, c, c, c, ni, ni, c)
        self._hs = tuple(np.zeros((k, wd, ch), dtype=np.float32)
                         for k, ch, wd in zip(_HIST_K, chans, widths, strict=True))
        self._g = np.zeros((2 * self.window, g), dtype=np.float32)  # double-written ring of projections
        self._g_row = np.zeros(g, dtype=np.float32)
        self._pos = 0
        self.count = 0  # rows pushed since the last reset
        self._logits = np.zeros(self.head_w.shape[0], dtype=np.float32)
        self._empty_g = np.zeros((0, g), dtype=np.float32)

    # -- stream

    def reset(self) -> None:
        self.count = 0

    def push_row(self, row: np.ndarray) -> None:
        """Feed the newest feature row (float32, (4·levels,)): one step through every layer."""
        if not self.streaming:
            self.count += 1
            return
        _stream_step(row, self.ws, self.bs, self._hs, self.wih, self.bias, self._g_row)
        w = self.window
        self._g[self._pos] = self._g_row
        self._g[self._pos + w] = self._g_row
        self._pos = (self._pos + 1) % w
        self.count += 1

    def logits(self, window_rows: np.ndarray) -> np.ndarray:
        """Logits for the window ending at the newest pushed row; `window_rows` are those W rows.

        Requires `count >= window` (the caller checks the window is full).
        """
        w = self.window
        if not self.streaming:
            return self.full_logits(window_rows)
        cached = self._g[self._pos + HEAD : self._pos + w]  # projections of window rows HEAD..W-1
        if self.mode == 1:  # causal: the first HEAD positions see the padding, recompute them
            head_x = _lstm_inputs_full(window_rows[:HEAD], self.ws, self.bs, 1)
            head_g = np.empty((HEAD, self.wih.shape[1]), dtype=np.float32)
            _project(head_x, self.wih, self.bias, head_g)
        else:
            head_g = self._empty_g
        _lstm_last(head_g, cached, self.whh, self.head_w, self.head_b, self._logits)
        return self._logits.copy()

    # -- stateless

    def full_logits(self, window_rows: np.ndarray) -> np.ndarray:
        """The whole window from scratch (no caches): the reference the streaming path must equal."""
        x = np.ascontiguousarray(window_rows, dtype=np.float32)
        seq = _lstm_inputs_full(x, self.ws, self.bs, self.mode)
        g = np.empty((seq.shape[0], self.wih.shape[1]), dtype=np.float32)
        _project(seq, self.wih, self.bias, g)
        out = np.empty(self.head_w.shape[0], dtype=np.float32)
        _lstm_last(self._empty_g, g, self.whh, self.head_w, self.head_b, out)
        return out


def warm_up() -> None:
    """Compile (or load from cache) every kernel now, so no update ever pays for it."""
    rng = np.random.default_rng(0)
    state = _random_state(rng, levels=2, c=2, i=2, hid=2)
    for padding in ("causal", "valid", "same"):
        m = StreamingDeepLOB(state, RECEPTIVE + 1, padding)
        rows = rng.standard_normal((RECEPTIVE + 1, 8)).astype(np.float32)
        for r in rows:
            m.push_row(r)
        m.logits(rows)
        m.full_logits(rows)
    assert math.isfinite(float(m.full_logits(rows)[0]))


def _random_state(rng: np.random.Generator, levels: int, c: int, i: int, hid: int) -> dict[str, np.ndarray]:
    t4 = (c, c, 4, 1)
    shapes = {
        "block1.spatial": (c, 1, 1, 2), "block1.time1.conv": t4, "block1.time2.conv": t4,
        "block2.spatial": (c, c, 1, 2), "block2.time1.conv": t4, "block2.time2.conv": t4,
        "block3.spatial": (c, c, 1, levels), "block3.time1.conv": t4, "block3.time2.conv": t4,
        "inception.reduce3": (i, c, 1, 1), "inception.conv3.conv": (i, i, 3, 1),
        "inception.reduce5": (i, c, 1, 1), "inception.conv5.conv": (i, i, 5, 1),
        "inception.pool_proj": (i, c, 1, 1),
    }
    st = {}
    for k, s in shapes.items():
        st[k + ".weight"] = rng.standard_normal(s).astype(np.float32) * 0.3
        st[k + ".bias"] = rng.standard_normal(s[0]).astype(np.float32) * 0.1
    st["lstm.weight_ih_l0"] = rng.standard_normal((4 * hid, 3 * i)).astype(np.float32) * 0.3
    st["lstm.weight_hh_l0"] = rng.standard_normal((4 * hid, hid)).astype(np.float32) * 0.3
    st["lstm.bias_ih_l0"] = np.zeros(4 * hid, np.float32)
    st["lstm.bias_hh_l0"] = np.zeros(4 * hid, np.float32)
    st["head.weight"] = rng.standard_normal((3, hid)).astype(np.float32)
    st["head.bias"] = np.zeros(3, np.float32)
    return st
