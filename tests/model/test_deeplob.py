"""The network: shapes per padding, gradients reach every weight, TorchScript round trip, size."""

from __future__ import annotations

import io

import pytest
import torch

from hftbot.model.deeplob import DeepLOB, count_parameters


@pytest.mark.parametrize("padding", ["causal", "same", "valid"])
def test_forward_gives_logits_per_window_for_every_padding(padding):
    m = DeepLOB(levels=10, window=40, conv_filters=4, inception_filters=4, padding=padding)
    x = torch.randn(3, 40, 40)
    assert m(x).shape == (3, 3)
    steps = m.lstm_inputs(x, True).shape[1]
    assert steps == (40 - 22 if padding == "valid" else 40)


def test_unpadded_conv_stack_needs_exactly_the_receptive_field():
    m = DeepLOB(levels=5, window=30, conv_filters=4, inception_filters=4)
    x = torch.randn(1, DeepLOB.receptive_field_rows(), 20)
    assert m.lstm_inputs(x, False).shape == (1, 1, 12)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = DeepLOB(levels=10, window=30, conv_filters=4, inception_filters=4, padding="causal")
    loss = torch.nn.functional.cross_entropy(m(torch.randn(4, 30, 40)), torch.tensor([0, 1, 2, 1]))
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("padding", ["causal", "valid"])
def test_torchscript_round_trip_gives_the_same_logits(padding):
    torch.manual_seed(1)
    m = DeepLOB(levels=10, window=30, conv_filters=4, inception_filters=8, padding=padding).eval()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(m), buf)
    loaded = torch.jit.load(io.BytesIO(buf.getvalue()))
    x = torch.randn(2, 30, 40)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), m(x), atol=1e-6)
        assert torch.allclose(loaded.lstm_inputs(x[:, :23], False), m.lstm_inputs(x[:, :23], False), atol=1e-6)


def test_parameter_count_matches_the_published_layouts():
    # 16/32 is the paper's figure: Keras counts 60,691; PyTorch's LSTM has a second bias vector (+256)
    assert count_parameters(DeepLOB(conv_filters=16, inception_filters=32)) == 60_691 + 256
    assert count_parameters(DeepLOB(conv_filters=32, inception_filters=64)) == 142_691


def test_bad_shapes_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="padding"):
        DeepLOB(padding="reflect")
    with pytest.raises(ValueError, match="window >= 23"):
        DeepLOB(window=20, padding="valid")
