"""Checkpoints: write, point to, load and verify a DeepLOB model.

A checkpoint is two files in one directory, plus a pointer:

- `<name>.pt`   the TorchScript model (`torch.jit.save` of a scripted `DeepLOB`);
- `<name>.json` its metadata: format, model id, the .pt's sha256, architecture, feature spec with
  the frozen normalisation, label rule (horizon, threshold), training data range, metrics, whether
  it was trained at all, and a self-test (an input window, base64 float32, and the logits the
  writer got for it);
- `CURRENT`     one line, the metadata file name of the model to serve; replaced atomically
  (write a temporary file, fsync, `os.replace`), so a reader sees the old name or the new one.

The model id is the first 8 bytes of the sha256 as a positive int64, never 0 (0 means "no
model" in a signal), so every signal can be traced to the exact file that produced it.

Loading refuses, with a `CheckpointError` that says what and where, anything that is not exactly
what it claims: unreadable or malformed metadata, another format, an architecture or feature spec
this runtime cannot serve, a missing or altered model file (sha256, model id), a file TorchScript
cannot load, weights that do not fit the architecture, a self-test that is not reproduced — by
TorchScript and by the numba runtime that will actually serve it — or non-finite outputs.

A checkpoint that verified once has its weights kept in `<dir>/.verified/<sha256>.npz`
(`save_verified`); `load_verified` serves it again without torch — the metadata, the model
file's sha256 and the self-test reproduced by the serving runtime are still checked every time,
only the TorchScript load and its self-test are not repeated — so a restarted inference is back
in a second or two instead of paying torch's import (several seconds on a small machine).

This module never touches rings or processes. CLI:
`python -m hftbot.model.checkpoint write --random [--seed S] [--from WEIGHTS.pt] --dir checkpoints/`,
`... verify PATH`, `... current --dir DIR`, `... promote PATH` (verify, then point its directory's
CURRENT at it: serving a model the trainer's gate did not promote is a person's decision).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hftbot.atomic import write_bytes_atomic
from hftbot.model.features import FeatureSpec
from hftbot.model.streaming import StreamingDeepLOB

# torch 2.13 marks torch.jit.* deprecated; it is still the checkpoint format (docs/model.md says why)
warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)

FORMAT = "hftbot.deeplob.checkpoint/1"
POINTER = "CURRENT"
CLASSES = ("down", "flat", "up")
MAX_META_BYTES = 16 << 20
MAX_MODEL_BYTES = 256 << 20
VERIFIED_DIR = ".verified"  # <dir>/.verified/<sha256>.npz: weights of checkpoints verified before
DEFAULT_TOLERANCE = 1e-4  # logits; float32 re-association differs across CPUs, never by this much


class CheckpointError(Exception):
    """A checkpoint that must not be served; the message names the file and the reason."""


@dataclass(frozen=True)
class Architecture:
    """The network's shape, as written in the metadata."""

    levels: int = 10
    window: int = 100
    conv_filters: int = 16
    inception_filters: int = 32
    lstm_hidden: int = 64
    padding: str = "valid"
    n_classes: int = 3

    def build(self):  # -> DeepLOB (torch imported lazily: the CLI and loader need it, readers may not)
        from hftbot.model.deeplob import DeepLOB

        return DeepLOB(self.levels, self.window, self.conv_filters, self.inception_filters,
                       self.lstm_hidden, self.padding, self.n_classes)

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        names = cls.__dataclass_fields__
        unknown = set(d) - set(names) - {"parameters"}
        if unknown:
            raise ValueError(f"unknown architecture fields {sorted(unknown)}")
        return cls(**{k: (str(v) if k == "padding" else int(v)) for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Compat:
    """What this runtime can serve: book levels the feed publishes, the longest window it keeps."""

    levels: int = 10
    max_window: int = 2000


@dataclass
class LoadedCheckpoint:
    """A verified checkpoint, ready to serve."""

    path: Path
    meta: dict
    model_id: int
    arch: Architecture
    spec: FeatureSpec
    state: dict  # name -> float32 numpy array
    script: object  # the TorchScript module (kept for full-window reference and export)

    def runtime(self) -> StreamingDeepLOB:
        """A fresh numba runtime with empty per-row caches (one per live stream)."""
        return StreamingDeepLOB(self.state, self.arch.window, self.arch.padding)


# ---------------------------------------------------------------- ids, hashing, pointer


def model_id_from_sha256(hexdigest: str) -> int:
    """First 8 bytes of the digest as a positive int64; 0 is reserved for "no model"."""
    v = int.from_bytes(bytes.fromhex(hexdigest)[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF
    return v or 1


def set_current(directory: str | os.PathLike, meta_name: str) -> None:
    """Point `directory/CURRENT` at a metadata file in the same directory (atomic)."""
    d = Path(directory)
    if Path(meta_name).name != meta_name or not meta_name.endswith(".json"):
        raise CheckpointError(f"pointer target must be a .json file name in {d}, got {meta_name!r}")
    write_bytes_atomic(d / POINTER, (meta_name + "\n").encode())


def read_pointer(directory: str | os.PathLike) -> Path | None:
    """The metadata path CURRENT names, or None when there is no pointer (cold start)."""
    p = Path(directory) / POINTER
    try:
        text = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: unreadable pointer: {e}") from e
    if not text or Path(text).name != text or not text.endswith(".json"):
        raise CheckpointError(f"{p}: pointer must hold one .json file name, got {text[:80]!r}")
    return Path(directory) / text


# ---------------------------------------------------------------- self-test encoding


def _encode(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "dtype": "float32", "base64": base64.b64encode(a.tobytes()).decode()}


def _decode(d: dict) -> np.ndarray:
    shape = tuple(int(x) for x in d["shape"])
    raw = base64.b64decode(d["base64"], validate=True)
    a = np.frombuffer(raw, dtype="<f4")
    if a.size != int(np.prod(shape)):
        raise ValueError(f"self-test array holds {a.size} values, shape {shape} needs {int(np.prod(shape))}")
    return a.reshape(shape).astype(np.float32)


# ---------------------------------------------------------------- write


def write_checkpoint(
    model,
    spec: FeatureSpec,
    directory: str | os.PathLike,
    *,
    trained: bool,
    note: str = "",
    labels: dict | None = None,
    data: dict | None = None,
    metrics: dict | None = None,
    self_test_input: np.ndarray | None = None,
    flip: bool = True,
    seed: int = 0,
    extra: dict | None = None,
) -> Path:
    """Script `model`, write .pt + .json into `directory`, and (by default) point CURRENT at it.

    `self_test_input` is one (W, 4·levels) window; a trainer should pass a real validation window.
    `extra` adds top-level metadata sections (the trainer's `training` and `gate`); it may not
    replace one this module writes. Returns the metadata path.
    """
    import torch

    from hftbot.model.deeplob import count_parameters

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arch = Architecture(model.levels, model.window, model.block1.spatial.out_channels,
                        model.inception.reduce3.out_channels, model.lstm.hidden_size, model.padding,
                        model.head.out_features)
    if (arch.levels, arch.window) != (spec.levels, spec.window):
        raise CheckpointError(f"model (levels={arch.levels}, window={arch.window}) and feature spec "
                              f"(levels={spec.levels}, window={spec.window}) disagree")
    model = model.eval().cpu()
    scripted = torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    blob = buf.getvalue()
    sha = hashlib.sha256(blob).hexdigest()
    model_id = model_id_from_sha256(sha)
    if self_test_input is None:
        self_test_input = np.random.default_rng(seed).standard_normal((arch.window, 4 * arch.levels))
    x = np.ascontiguousarray(self_test_input, dtype=np.float32)
    if x.shape != (arch.window, 4 * arch.levels):
        raise CheckpointError(f"self-test input must be ({arch.window}, {4 * arch.levels}), got {x.shape}")
    with torch.inference_mode():
        expected = scripted(torch.from_numpy(x)[None])[0].numpy()
    if not np.all(np.isfinite(expected)):
        raise CheckpointError("the model's self-test output is not finite; refusing to write it")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"deeplob-{stamp}-{sha[:12]}"
    meta = {
        "format": FORMAT,
        "model_id": model_id,
        "model_file": name + ".pt",
        "sha256": sha,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trained": bool(trained),
        "note": note,
        "architecture": {**asdict(arch), "parameters": count_parameters(model)},
        "features": spec.to_dict(),
        "labels": labels or {"classes": list(CLASSES), "horizon": None, "threshold": None, "rule": None},
        "data": data or {"symbol": None, "start": None, "end": None},
        "metrics": metrics or {},
        "self_test": {"input": _encode(x), "expected_logits": _encode(expected), "tolerance": DEFAULT_TOLERANCE},
        "runtime": {"torch": torch.__version__},
    }
    for k, v in (extra or {}).items():
        if k in meta:
            raise CheckpointError(f"extra metadata may not replace {k!r}")
        meta[k] = v
    write_bytes_atomic(d / (name + ".pt"), blob)
    meta_path = d / (name + ".json")
    write_bytes_atomic(meta_path, json.dumps(meta, indent=1).encode())
    if flip:
        set_current(d, meta_path.name)
    return meta_path


# ---------------------------------------------------------------- load and verify


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path.name} refused: {why}")


@dataclass
class _Meta:
    """What the metadata vouches for, parsed and checked against this runtime (no torch)."""

    path: Path
    meta: dict
    arch: Architecture
    spec: FeatureSpec
    st_x: np.ndarray
    st_y: np.ndarray
    tol: float
    model_file: str
    sha: str
    model_id: int
    blob: bytes  # the model file, its sha256 checked


def _read_meta(path: Path, compat: Compat) -> _Meta:
    """Every check that needs no torch: metadata, compatibility, the model file's sha256."""
    try:
        size = path.stat().st_size
        if size > MAX_META_BYTES:
            raise _fail(path, f"metadata is {size} bytes (limit {MAX_META_BYTES})")
        meta = json.loads(path.read_bytes())
    except FileNotFoundError as e:
        raise _fail(path, "metadata file does not exist") from e
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _fail(path, f"metadata is not readable JSON ({e})") from e
    if not isinstance(meta, dict):
        raise _fail(path, "metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise _fail(path, f"format {meta.get('format')!r} is not {FORMAT!r}")
    try:
        arch = Architecture.from_dict(meta["architecture"])
        spec = FeatureSpec.from_dict(meta["features"])
        st_x = _decode(meta["self_test"]["input"])
        st_y = _decode(meta["self_test"]["expected_logits"])
        tol = float(meta["self_test"].get("tolerance", DEFAULT_TOLERANCE))
        model_file = str(meta["model_file"])
        sha = str(meta["sha256"])
        model_id = int(meta["model_id"])
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(path, f"metadata field missing or malformed ({type(e).__name__}: {e})") from e
    # compatibility with this runtime
    if arch.n_classes != len(CLASSES):
        raise _fail(path, f"{arch.n_classes} classes; the signal record carries {len(CLASSES)}")
    if (arch.levels, arch.window) != (spec.levels, spec.window):
        raise _fail(path, f"architecture (levels={arch.levels}, window={arch.window}) and features "
                          f"(levels={spec.levels}, window={spec.window}) disagree")
    if spec.levels > compat.levels:
        raise _fail(path, f"needs {spec.levels} book levels, the feed publishes {compat.levels}")
    if spec.window > compat.max_window:
        raise _fail(path, f"window {spec.window} exceeds inference.max_window {compat.max_window}")
    if arch.padding not in ("causal", "same", "valid"):
        raise _fail(path, f"unknown padding {arch.padding!r}")
    if st_x.shape != (arch.window, 4 * arch.levels) or st_y.shape != (arch.n_classes,):
        raise _fail(path, f"self-test shapes {st_x.shape} -> {st_y.shape} do not fit the architecture")
    if not (0 < tol <= 1e-2):
        raise _fail(path, f"self-test tolerance {tol} outside (0, 1e-2]")
    # the model file: exactly the bytes the metadata vouches for
    if Path(model_file).name != model_file:
        raise _fail(path, f"model_file must be a bare file name, got {model_file!r}")
    pt = path.parent / model_file
    try:
        if pt.stat().st_size > MAX_MODEL_BYTES:
            raise _fail(path, f"{model_file} is larger than {MAX_MODEL_BYTES} bytes")
        blob = pt.read_bytes()
    except OSError as e:
        raise _fail(path, f"model file {model_file} unreadable ({e})") from e
    got = hashlib.sha256(blob).hexdigest()
    if got != sha:
        raise _fail(path, f"sha256 of {model_file} is {got[:16]}…, metadata says {sha[:16]}… (altered or truncated)")
    if model_id != model_id_from_sha256(sha):
        raise _fail(path, f"model_id {model_id} does not derive from the sha256 ({model_id_from_sha256(sha)})")
    return _Meta(path, meta, arch, spec, st_x, st_y, tol, model_file, sha, model_id, blob)


def _runtime_self_test(m: _Meta, state: dict, reference: np.ndarray) -> float:
    """Max |logit error| of the numba serving runtime (full window and streamed) against
    `reference` logits for the self-test input."""
    rt = StreamingDeepLOB(state, m.arch.window, m.arch.padding)
    full = rt.full_logits(m.st_x)
    for row in m.st_x:
        rt.push_row(row)
    live = rt.logits(m.st_x)
    err = float(max(np.max(np.abs(full - reference)), np.max(np.abs(live - reference))))
    return err if np.all(np.isfinite(full)) and np.all(np.isfinite(live)) else math.inf


def load_checkpoint(meta_path: str | os.PathLike, compat: Compat | None = None) -> LoadedCheckpoint:
    """Read, verify and return a checkpoint; any doubt raises CheckpointError (nothing half-loaded)."""
    import torch

    compat = compat or Compat()
    path = Path(meta_path)
    m = _read_meta(path, compat)
    arch, st_x, st_y, tol, model_file = m.arch, m.st_x, m.st_y, m.tol, m.model_file
    try:
        script = torch.jit.load(io.BytesIO(m.blob), map_location="cpu")
        script.eval()
    except Exception as e:  # TorchScript raises RuntimeError and friends for a corrupt archive
        raise _fail(path, f"TorchScript cannot load {model_file} ({type(e).__name__}: {str(e)[:200]})") from e
    # weights must be exactly the architecture's
    try:
        state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in script.state_dict().items()}
        reference = arch.build()
        reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    except Exception as e:
        raise _fail(path, f"weights do not fit the architecture ({type(e).__name__}: {str(e)[:200]})") from e
    # self-test, by TorchScript and by the runtime that will serve it
    # optimized_execution(False): no profiling passes on a module we run twice (loading stays cheap)
    with torch.jit.optimized_execution(False), torch.inference_mode():
        try:
            ts_out = script(torch.from_numpy(st_x)[None])[0].numpy()
            probe = script(torch.from_numpy(
                np.random.default_rng(1).standard_normal((4, arch.window, 4 * arch.levels)).astype(np.float32)
            )).numpy()
        except Exception as e:
            raise _fail(path, f"model forward failed ({type(e).__name__}: {str(e)[:200]})") from e
    if not (np.all(np.isfinite(ts_out)) and np.all(np.isfinite(probe))):
        raise _fail(path, "outputs are not finite")
    err = float(np.max(np.abs(ts_out - st_y)))
    if not err <= tol:
        raise _fail(path, f"self-test not reproduced by TorchScript: max |logit error| {err:.3g} > {tol:g}")
    err_rt = _runtime_self_test(m, state, ts_out)
    if not err_rt <= tol:
        raise _fail(path, f"self-test not reproduced by the serving runtime: max |logit error| {err_rt:.3g}")
    return LoadedCheckpoint(path, m.meta, m.model_id, arch, m.spec, state, script)


# ---------------------------------------------------------------- verified-weights cache


def _verified_path(directory: Path, sha: str) -> Path:
    return directory / VERIFIED_DIR / f"{sha}.npz"


def save_verified(ckpt: LoadedCheckpoint) -> Path | None:
    """Keep the weights of a checkpoint `load_checkpoint` verified, keyed by its model file's
    sha256, so a restarted inference serves it again without importing torch (seconds). Best
    effort: a read-only folder only costs the fast path."""
    target = _verified_path(ckpt.path.parent, str(ckpt.meta["sha256"]))
    buf = io.BytesIO()
    np.savez(buf, **ckpt.state)
    try:
        target.parent.mkdir(exist_ok=True)
        write_bytes_atomic(target, buf.getvalue())
    except OSError:
        return None
    return target


def load_verified(meta_path: str | os.PathLike, compat: Compat | None = None) -> LoadedCheckpoint | None:
    """A checkpoint verified before (its weights in the cache), checked again without torch: the
    metadata and compatibility, the model file's sha256 and id, and the self-test reproduced by
    the serving runtime from the cached weights. None when there is no usable cache entry (the
    caller then runs `load_checkpoint`); CheckpointError for what is wrong in any case."""
    compat = compat or Compat()
    path = Path(meta_path)
    m = _read_meta(path, compat)
    cached = _verified_path(path.parent, m.sha)
    try:
        with np.load(cached, allow_pickle=False) as z:
            state = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
        err = _runtime_self_test(m, state, m.st_y)
    except Exception:  # missing, unreadable, or not these weights: verify from scratch
        return None
    if not err <= m.tol:
        return None
    return LoadedCheckpoint(path, m.meta, m.model_id, m.arch, m.spec, state, None)


def load_current(directory: str | os.PathLike, compat: Compat | None = None) -> LoadedCheckpoint | None:
    """The checkpoint CURRENT points at, verified; None when there is no pointer."""
    p = read_pointer(directory)
    return None if p is None else load_checkpoint(p, compat)


# ---------------------------------------------------------------- CLI


def _cmd_write(a: argparse.Namespace) -> int:
    import torch

    torch.manual_seed(a.seed)
    arch = Architecture(a.levels, a.window, a.filters[0], a.filters[1], padding=a.padding)
    model = arch.build()
    trained = False
    note = f"UNTRAINED: random weights (seed {a.seed}); for plumbing only, never trade on it"
    if a.from_path:
        src = Path(a.from_path)
        try:
            obj = torch.jit.load(str(src), map_location="cpu").state_dict()
        except Exception:
            obj = torch.load(str(src), map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "state_dict" in obj:
            obj = obj["state_dict"]
        model.load_state_dict(obj, strict=True)
        trained = not a.untrained
        note = a.note or f"weights from {src.name}"
    elif not a.random:
        print("write: give --random or --from WEIGHTS.pt", file=sys.stderr)
        return 2
    spec = FeatureSpec(levels=a.levels, window=a.window, price_ref=a.price_ref)
    meta = write_checkpoint(model, spec, a.dir, trained=trained, note=a.note or note, flip=not a.no_flip,
                            seed=a.seed)
    loaded = load_checkpoint(meta, Compat(levels=a.levels, max_window=max(a.window, Compat.max_window)))
    print(f"wrote {meta} model_id={loaded.model_id} parameters={loaded.meta['architecture']['parameters']}"
          + ("" if a.no_flip else f"; {Path(a.dir) / POINTER} -> {meta.name}"))
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    path = Path(a.path)
    if path.suffix != ".json":  # the model file, or anything else: say what verify reads
        meta = path.with_suffix(".json")
        hint = f"; its metadata would be {meta}" if meta.exists() else ""
        print(f"checkpoint verify: {path} is not a checkpoint's metadata file (the .json){hint}", file=sys.stderr)
        return 2
    try:
        c = load_checkpoint(a.path, Compat(levels=a.levels, max_window=a.max_window))
    except CheckpointError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(f"ok {c.path.name} model_id={c.model_id} trained={c.meta.get('trained')} arch={c.meta['architecture']}")
    return 0


def _cmd_current(a: argparse.Namespace) -> int:
    try:
        p = read_pointer(a.dir)
    except CheckpointError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(p if p is not None else f"no {POINTER} in {a.dir}")
    return 0 if p is not None else 1


def _cmd_promote(a: argparse.Namespace) -> int:
    """Verify a checkpoint, then flip CURRENT in its own directory to it (a running inference
    process picks it up at its next poll)."""
    path = Path(a.path)
    if path.suffix != ".json":
        print(f"checkpoint promote: {path} is not a checkpoint's metadata file (the .json)", file=sys.stderr)
        return 2
    try:
        c = load_checkpoint(path, Compat(levels=a.levels, max_window=a.max_window))
    except CheckpointError as e:
        print(f"checkpoint promote: not promoted: {e}", file=sys.stderr)
        return 1
    set_current(path.parent, path.name)
    print(f"promoted {path.name} (model_id={c.model_id}): {path.parent / POINTER} points at it")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.model.checkpoint", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a checkpoint from random or given weights and flip CURRENT")
    w.add_argument("--random", action="store_true", help="random weights (an untrained model)")
    w.add_argument("--from", dest="from_path", help="state_dict (torch.save) or TorchScript file to take weights from")
    w.add_argument("--untrained", action="store_true", help="with --from: still mark the checkpoint untrained")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--dir", default="checkpoints")
    w.add_argument("--levels", type=int, default=10)
    w.add_argument("--window", type=int, default=100)
    w.add_argument("--filters", type=int, nargs=2, default=(16, 32), metavar=("CONV", "INCEPTION"))
    w.add_argument("--padding", choices=("causal", "same", "valid"), default="valid")
    w.add_argument("--price-ref", choices=("prev_mid", "mid"), default="prev_mid")
    w.add_argument("--note", default="")
    w.add_argument("--no-flip", action="store_true", help="write the files but leave CURRENT alone")
    w.set_defaults(fn=_cmd_write)
    v = sub.add_parser("verify", help="load and verify a checkpoint's metadata file")
    v.add_argument("path", help="the checkpoint's metadata .json (it names the .pt and its sha256)")
    v.add_argument("--levels", type=int, default=10)
    v.add_argument("--max-window", type=int, default=Compat.max_window)
    v.set_defaults(fn=_cmd_verify)
    pr = sub.add_parser("promote", help="verify a checkpoint and point its directory's CURRENT at it")
    pr.add_argument("path", help="the checkpoint's metadata .json")
    pr.add_argument("--levels", type=int, default=10)
    pr.add_argument("--max-window", type=int, default=Compat.max_window)
    pr.set_defaults(fn=_cmd_promote)
    c = sub.add_parser("current", help="print what CURRENT points at")
    c.add_argument("--dir", default="checkpoints")
    c.set_defaults(fn=_cmd_current)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    raise SystemExit(main())
