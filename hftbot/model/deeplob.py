"""DeepLOB (Zhang, Zohren, Roberts 2019) as published, one class per block.

Input: a window of W book rows × 4·N features in the paper's order (ask_px, ask_qty, bid_px,
bid_qty per level, see `hftbot.model.features`). Three conv blocks (1×2 stride 2, 1×2 stride 2,
1×N, each followed by two 4×1 convs along time), the inception module (1×1→3×1, 1×1→5×1,
3×1 max-pool→1×1), an LSTM(64) and a linear head to 3 logits (down, flat, up). LeakyReLU 0.01
everywhere; no batch norm, no dropout (the paper mentions neither).

Time padding is a choice:
- "causal": every time conv is zero-padded on the left only, so output row t depends on rows ≤ t
  and the newest output can be computed from the last `receptive_field` rows (streaming);
- "same": the paper's zero padding (Keras style, the extra row on the right for even kernels);
- "valid": no padding; the LSTM sees W − receptive_field + 1 steps (the reference notebook
  pads only the conv blocks; here the inception branches are cropped to the shortest instead,
  so every LSTM step depends on real rows only).

Every block can also run with padding switched off (`pad=False`): that is how the streaming path
(`hftbot.model.streaming`) computes one new row from the last rows without repeating work.

This module only defines the network. It must never read files, features or checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PADDINGS = ("causal", "same", "valid")
SLOPE = 0.01  # LeakyReLU slope (the paper's grid-search pick); written as a literal below for TorchScript


def _pad_sizes(k: int, padding: str) -> tuple[int, int]:
    """Rows added before and after the window for a k-row kernel."""
    if padding == "causal":
        return k - 1, 0
    if padding == "same":
        return (k - 1) // 2, (k - 1) - (k - 1) // 2
    if padding == "valid":
        return 0, 0
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


class TimeConv(nn.Module):
    """k×1 convolution along time + LeakyReLU, padded by the model's rule."""

    def __init__(self, c_in: int, c_out: int, k: int, padding: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, (k, 1))
        self.before, self.after = _pad_sizes(k, padding)

    def forward(self, x: torch.Tensor, pad: bool = True) -> torch.Tensor:
        if pad and (self.before > 0 or self.after > 0):
            x = F.pad(x, (0, 0, self.before, self.after))
        return F.leaky_relu(self.conv(x), 0.01)


class ConvBlock(nn.Module):
    """A spatial conv (1×kw, stride sw) that merges columns, then two 4×1 convs along time."""

    def __init__(self, c_in: int, c_out: int, kw: int, sw: int, padding: str) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(c_in, c_out, (1, kw), stride=(1, sw))
        self.time1 = TimeConv(c_out, c_out, 4, padding)
        self.time2 = TimeConv(c_out, c_out, 4, padding)

    def forward(self, x: torch.Tensor, pad: bool = True) -> torch.Tensor:
        x = F.leaky_relu(self.spatial(x), 0.01)
        return self.time2(self.time1(x, pad), pad)


class Inception(nn.Module):
    """Three branches over time (3-row, 5-row, 3-row max-pool), concatenated on channels."""

    def __init__(self, c_in: int, c_out: int, padding: str) -> None:
        super().__init__()
        self.reduce3 = nn.Conv2d(c_in, c_out, (1, 1))
        self.conv3 = TimeConv(c_out, c_out, 3, padding)
        self.reduce5 = nn.Conv2d(c_in, c_out, (1, 1))
        self.conv5 = TimeConv(c_out, c_out, 5, padding)
        self.pool_proj = nn.Conv2d(c_in, c_out, (1, 1))
        self.pool_before, self.pool_after = _pad_sizes(3, padding)

    def forward(self, x: torch.Tensor, pad: bool = True) -> torch.Tensor:
        a = self.conv3(F.leaky_relu(self.reduce3(x), 0.01), pad)
        b = self.conv5(F.leaky_relu(self.reduce5(x), 0.01), pad)
        p = x
        if pad and (self.pool_before > 0 or self.pool_after > 0):
            # max-pool padding never wins the max: pad with -inf, as Keras "same" pooling does
            p = F.pad(p, (0, 0, self.pool_before, self.pool_after), value=float("-inf"))
        p = F.max_pool2d(p, (3, 1), stride=(1, 1))
        c = F.leaky_relu(self.pool_proj(p), 0.01)
        n = b.shape[2]  # the 5-row branch is the shortest when unpadded; align all on the newest row
        return torch.cat([a[:, :, a.shape[2] - n :], b, c[:, :, c.shape[2] - n :]], dim=1)


class DeepLOB(nn.Module):
    """The full network: features (B, W, 4·levels) -> logits (B, 3)."""

    def __init__(
        self,
        levels: int = 10,
        window: int = 100,
        conv_filters: int = 16,
        inception_filters: int = 32,
        lstm_hidden: int = 64,
        padding: str = "causal",
        n_classes: int = 3,
    ) -> None:
        super().__init__()
        _pad_sizes(1, padding)  # validates
        if levels < 1 or window < 1 or conv_filters < 1 or inception_filters < 1 or lstm_hidden < 1:
            raise ValueError("levels, window, conv_filters, inception_filters, lstm_hidden must all be >= 1")
        if padding == "valid" and window < self.receptive_field_rows():
            raise ValueError(f"valid padding needs window >= {self.receptive_field_rows()}, got {window}")
        self.levels = levels
        self.window = window
        self.padding = padding
        self.n_features = 4 * levels
        self.lstm_input = 3 * inception_filters
        self.block1 = ConvBlock(1, conv_filters, 2, 2, padding)  # pairs price with size
        self.block2 = ConvBlock(conv_filters, conv_filters, 2, 2, padding)  # pairs ask with bid
        self.block3 = ConvBlock(conv_filters, conv_filters, levels, 1, padding)  # merges the levels
        self.inception = Inception(conv_filters, inception_filters, padding)
        self.lstm = nn.LSTM(self.lstm_input, lstm_hidden, batch_first=True)
        self.head = nn.Linear(lstm_hidden, n_classes)

    @staticmethod
    def receptive_field_rows() -> int:
        """Rows of input that one LSTM step depends on: 1 + 3·(3+3) + 4."""
        return 1 + 3 * 6 + 4

    @torch.jit.export
    def lstm_inputs(self, x: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """(B, T, F) features -> (B, T', 3·inception_filters), the sequence the LSTM reads."""
        h = x.unsqueeze(1)
        h = self.block3(self.block2(self.block1(h, pad), pad), pad)
        h = self.inception(h, pad)  # (B, C, T', 1)
        return h.squeeze(3).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, 4·levels) -> (B, n_classes) logits (softmax them for probabilities)."""
        seq = self.lstm_inputs(x, True)
        out, _ = self.lstm(seq)
        return self.head(out[:, -1])


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (PyTorch counts two LSTM bias vectors where Keras counts one)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv: list[str] | None = None) -> int:
    """`python -m hftbot.model.deeplob [--filters C I]`: print the layout's parameter count."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--filters", type=int, nargs=2, default=(16, 32), metavar=("CONV", "INCEPTION"))
    ap.add_argument("--padding", choices=PADDINGS, default="causal")
    a = ap.parse_args(argv)
    m = DeepLOB(a.levels, a.window, a.filters[0], a.filters[1], padding=a.padding)
    print(f"DeepLOB levels={a.levels} window={a.window} filters={a.filters} padding={a.padding}: "
          f"{count_parameters(m):,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
