"""TensorBoard for the trainer: scalars per split, a confusion-matrix image, hyperparameters.

`runs/<run>/` gets, per epoch: ``<split>/loss``, ``<split>/accuracy``, ``<split>/macro_f1``,
``<split>/precision_<class>``, ``<split>/recall_<class>``, ``<split>/confusion`` (an image),
``train/lr``, ``train/windows_per_s`` and, on a GPU, ``gpu/max_memory_mb``; at the end the test
scores of the model and of every baseline and `add_hparams` with the final metrics.

The confusion image is drawn with numpy (no plotting dependency): one cell per (true, predicted)
pair, shaded by the row share, with the share written in a 3×5 pixel font. Only rank 0 logs.
"""

from __future__ import annotations

import numpy as np

from hftbot.model.metrics import CLASS_NAMES

_GLYPHS = {  # 3×5, rows top to bottom
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
    "%": ("101", "001", "010", "100", "101"), " ": ("000",) * 5,
}


def _text(img: np.ndarray, y: int, x: int, s: str, scale: int, color: tuple[int, int, int]) -> None:
    for ch in s:
        g = _GLYPHS.get(ch, _GLYPHS[" "])
        for r, row in enumerate(g):
            for c, bit in enumerate(row):
                if bit == "1":
                    img[y + r * scale : y + (r + 1) * scale, x + c * scale : x + (c + 1) * scale] = color
        x += 4 * scale


def confusion_image(cm: np.ndarray, cell: int = 48, scale: int = 3) -> np.ndarray:
    """(H, W, 3) uint8: rows = true class (down, flat, up), columns = predicted; row shares in %."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    img = np.full((n * cell + 1, n * cell + 1, 3), 255, dtype=np.uint8)
    for i in range(n):
        for j in range(n):
            v = share[i, j]
            shade = np.array([255 - 200 * v, 255 - 140 * v, 255 - 30 * v])  # white → blue
            img[i * cell + 1 : (i + 1) * cell, j * cell + 1 : (j + 1) * cell] = shade.astype(np.uint8)
            label = f"{round(100 * v)}%"
            color = (255, 255, 255) if v > 0.55 else (20, 20, 60)
            width = len(label) * 4 * scale - scale
            _text(img, i * cell + (cell - 5 * scale) // 2, j * cell + (cell - width) // 2, label, scale, color)
    img[::cell, :] = 90
    img[:, ::cell] = 90
    return img


class TBLog:
    """A SummaryWriter for rank 0, nothing elsewhere (every method is then a no-op)."""

    def __init__(self, logdir: str | None) -> None:
        self.w = None
        if logdir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.w = SummaryWriter(log_dir=logdir)

    def scores(self, split: str, s: dict, step: int, loss: float | None = None) -> None:
        if self.w is None:
            return
        if loss is not None:
            self.w.add_scalar(f"{split}/loss", loss, step)
        for k in ("accuracy", "macro_f1"):
            self.w.add_scalar(f"{split}/{k}", s[k], step)
        for c in CLASS_NAMES:
            self.w.add_scalar(f"{split}/precision_{c}", s[f"precision_{c}"], step)
            self.w.add_scalar(f"{split}/recall_{c}", s[f"recall_{c}"], step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.w is not None:
            self.w.add_scalar(tag, value, step)

    def confusion(self, tag: str, cm: np.ndarray, step: int) -> None:
        if self.w is not None:
            self.w.add_image(tag, confusion_image(cm), step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.w is not None:
            self.w.add_text(tag, text, step)

    def hparams(self, hparams: dict, metrics: dict) -> None:
        if self.w is None:
            return
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        self.w.add_hparams(clean, {f"hparam/{k}": float(v) for k, v in metrics.items()}, run_name=".")

    def close(self) -> None:
        if self.w is not None:
            self.w.flush()
            self.w.close()
