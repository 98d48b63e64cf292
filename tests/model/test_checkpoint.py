"""Checkpoints: a written one loads; corrupt, truncated, incompatible, self-test-failing ones are refused."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hftbot.model.checkpoint import (
    POINTER,
    CheckpointError,
    Compat,
    load_checkpoint,
    main,
    model_id_from_sha256,
    read_pointer,
    set_current,
    write_checkpoint,
)
from hftbot.model.deeplob import DeepLOB
from hftbot.model.features import FeatureSpec

W = 30


def small_model(seed: int = 0, padding: str = "valid") -> DeepLOB:
    torch.manual_seed(seed)
    return DeepLOB(levels=10, window=W, conv_filters=4, inception_filters=8, padding=padding)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    return write_checkpoint(small_model(), FeatureSpec(levels=10, window=W), d, trained=False, note="test")


@pytest.fixture()
def copy(good, tmp_path) -> Path:
    for p in good.parent.iterdir():
        shutil.copy(p, tmp_path / p.name)
    return tmp_path / good.name


def _meta(p: Path) -> dict:
    return json.loads(p.read_text())


def _rewrite_model(meta_path: Path, blob: bytes) -> None:
    """Replace the .pt and make sha256/model_id agree with it, as a careless tool would."""
    meta = _meta(meta_path)
    (meta_path.parent / meta["model_file"]).write_bytes(blob)
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    meta["model_id"] = model_id_from_sha256(meta["sha256"])
    meta_path.write_text(json.dumps(meta))


def test_written_checkpoint_loads_verified_and_pointer_names_it(good):
    assert read_pointer(good.parent) == good
    c = load_checkpoint(good, Compat(levels=10))
    meta = _meta(good)
    assert c.model_id == meta["model_id"] == model_id_from_sha256(meta["sha256"]) and c.model_id > 0
    assert meta["trained"] is False and meta["architecture"]["parameters"] > 0
    assert set(meta) >= {"features", "labels", "data", "metrics", "self_test", "sha256"}
    rt = c.runtime()
    x = np.random.default_rng(0).standard_normal((W, 40)).astype(np.float32)
    with torch.inference_mode():
        ref = c.script(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(rt.full_logits(x), ref, atol=1e-5)


def test_model_id_is_positive_and_never_zero():
    assert model_id_from_sha256("00" * 32) == 1
    assert model_id_from_sha256("ff" * 32) == 0x7FFF_FFFF_FFFF_FFFF


def test_altered_model_file_is_refused_by_sha256(copy):
    pt = copy.parent / _meta(copy)["model_file"]
    blob = bytearray(pt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    pt.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(copy)


def test_truncated_model_and_metadata_are_refused(copy):
    pt = copy.parent / _meta(copy)["model_file"]
    pt.write_bytes(pt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="altered or truncated"):
        load_checkpoint(copy)
    copy.write_bytes(copy.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="not readable JSON"):
        load_checkpoint(copy)


def test_garbage_that_matches_its_own_hash_is_refused_by_torchscript(copy):
    _rewrite_model(copy, b"PK\x03\x04 this is not a TorchScript archive")
    with pytest.raises(CheckpointError, match="TorchScript cannot load"):
        load_checkpoint(copy)


def test_incompatible_checkpoints_are_refused(copy):
    with pytest.raises(CheckpointError, match="needs 10 book levels"):
        load_checkpoint(copy, Compat(levels=5))
    with pytest.raises(CheckpointError, match="max_window"):
        load_checkpoint(copy, Compat(levels=10, max_window=W - 1))
    meta = _meta(copy)
    meta["format"] = "someone.else/9"
    copy.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(copy)


def test_weights_that_do_not_fit_the_architecture_are_refused(copy):
    meta = _meta(copy)
    meta["architecture"]["conv_filters"] = 6
    copy.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(copy)


def test_self_test_not_reproduced_is_refused(copy):
    meta = _meta(copy)
    raw = np.frombuffer(__import__("base64").b64decode(meta["self_test"]["expected_logits"]["base64"]), "<f4")
    meta["self_test"]["expected_logits"]["base64"] = __import__("base64").b64encode(
        (raw + np.float32(0.01)).astype("<f4").tobytes()).decode()
    copy.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="self-test not reproduced"):
        load_checkpoint(copy)


def test_non_finite_outputs_are_refused(copy):
    m = small_model()
    with torch.no_grad():
        m.head.bias.fill_(float("nan"))
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(m.eval()), buf)
    _rewrite_model(copy, buf.getvalue())
    with pytest.raises(CheckpointError, match="not finite"):
        load_checkpoint(copy)
    with pytest.raises(CheckpointError, match="not finite"):
        write_checkpoint(m, FeatureSpec(levels=10, window=W), copy.parent, trained=False)


def test_pointer_is_a_bare_json_name(tmp_path):
    with pytest.raises(CheckpointError, match="pointer target"):
        set_current(tmp_path, "../elsewhere.json")
    (tmp_path / POINTER).write_text("../../etc/passwd\n")
    with pytest.raises(CheckpointError, match="pointer must hold"):
        read_pointer(tmp_path)
    assert read_pointer(tmp_path / "missing") is None
    set_current(tmp_path, "a.json")
    assert read_pointer(tmp_path) == tmp_path / "a.json"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_cli_writes_random_and_given_weights_and_flips_the_pointer(tmp_path, capsys):
    args = ["--window", str(W), "--filters", "4", "8", "--dir", str(tmp_path)]
    assert main(["write", "--random", "--seed", "7", *args]) == 0
    first = read_pointer(tmp_path)
    assert _meta(first)["trained"] is False and "UNTRAINED" in _meta(first)["note"]
    sd = tmp_path / "weights.pt"
    torch.save(small_model(seed=9).state_dict(), sd)
    assert main(["write", "--from", str(sd), *args]) == 0
    second = read_pointer(tmp_path)
    assert second != first and _meta(second)["trained"] is True
    assert main(["verify", str(second)]) == 0
    assert main(["write", "--random", "--no-flip", "--seed", "8", *args]) == 0
    assert read_pointer(tmp_path) == second
    assert "model_id=" in capsys.readouterr().out


def test_cli_promote_verifies_then_flips_the_pointer_and_refuses_a_broken_checkpoint(tmp_path, capsys):
    args = ["--window", str(W), "--filters", "4", "8", "--dir", str(tmp_path)]
    assert main(["write", "--random", "--seed", "7", *args]) == 0
    first = read_pointer(tmp_path)
    assert main(["write", "--random", "--no-flip", "--seed", "8", *args]) == 0
    (second,) = [p for p in tmp_path.glob("*.json") if p != first]
    assert main(["promote", str(second)]) == 0
    assert read_pointer(tmp_path) == second and f"promoted {second.name}" in capsys.readouterr().out
    pt = first.with_suffix(".pt")
    pt.write_bytes(pt.read_bytes()[:-32])  # altered: its sha256 no longer matches
    assert main(["promote", str(first)]) == 1
    assert read_pointer(tmp_path) == second  # left alone
    assert "not promoted" in capsys.readouterr().err
    assert main(["promote", str(pt)]) == 2


def test_a_verified_checkpoint_loads_again_from_the_cache_without_torch(copy):
    """A restarted inference must not pay torch's import for the model it served: the verified
    weights come back from `.verified/`, and what is checkable without torch is checked."""
    import subprocess
    import sys

    from hftbot.model.checkpoint import VERIFIED_DIR, load_verified
    from hftbot.model.engine import load_for_serving

    assert load_verified(copy, Compat(levels=10)) is None  # never verified here: no cache yet
    full = load_for_serving(copy, Compat(levels=10))
    assert (copy.parent / VERIFIED_DIR / f"{_meta(copy)['sha256']}.npz").exists()
    code = (
        "import sys; from pathlib import Path\n"
        "from hftbot.model.engine import load_for_serving\nfrom hftbot.model.checkpoint import Compat\n"
        f"c = load_for_serving(Path({str(copy)!r}), Compat(levels=10))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\nprint(c.model_id)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == full.model_id
    cached = load_verified(copy, Compat(levels=10))
    x = np.random.default_rng(3).standard_normal((W, 40)).astype(np.float32)
    np.testing.assert_array_equal(cached.runtime().full_logits(x), full.runtime().full_logits(x))


def test_the_cache_never_vouches_for_an_altered_model_or_bad_weights(copy):
    from hftbot.model.checkpoint import VERIFIED_DIR, load_verified, save_verified

    full = load_checkpoint(copy, Compat(levels=10))
    save_verified(full)
    cache = copy.parent / VERIFIED_DIR / f"{_meta(copy)['sha256']}.npz"
    pt = copy.parent / _meta(copy)["model_file"]
    blob = pt.read_bytes()
    pt.write_bytes(blob[:-10])  # altered model file: refused, cache or not
    with pytest.raises(CheckpointError, match="sha256"):
        load_verified(copy, Compat(levels=10))
    pt.write_bytes(blob)
    state = {k: v * 1.5 for k, v in full.state.items()}  # a cache entry that is not these weights
    buf = io.BytesIO()
    np.savez(buf, **state)
    cache.write_bytes(buf.getvalue())
    assert load_verified(copy, Compat(levels=10)) is None  # the serving runtime's self-test fails
    cache.write_bytes(b"not an npz")
    assert load_verified(copy, Compat(levels=10)) is None


def test_cli_verify_of_the_model_file_names_the_metadata_it_wants(tmp_path, capsys):
    assert main(["write", "--random", "--window", str(W), "--filters", "4", "8", "--dir", str(tmp_path)]) == 0
    meta = read_pointer(tmp_path)
    capsys.readouterr()
    assert main(["verify", str(meta.with_suffix(".pt"))]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint's metadata file (the .json)" in err and str(meta) in err
