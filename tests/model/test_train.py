"""training/train.py end to end on generated data: TensorBoard, checkpoint, serving, resume, DDP."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from hftbot.model import dataset as ds
from hftbot.model.checkpoint import Compat, load_checkpoint, read_pointer
from hftbot.model.engine import ModelRuntime
from hftbot.model.labels import LabelRule
from tests.model.trainer import TINY, run_train, script_module

COMPAT = Compat(levels=10, max_window=200)


@pytest.fixture(scope="module")
def trained(sim_raw, tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    r = run_train(["--data", str(sim_raw), "--out", "ck", "--logdir", "runs", "--seed", "3", *TINY], work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work, r


def test_a_one_epoch_cpu_run_writes_tensorboard_events_and_a_checkpoint(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work, r = trained
    (run_dir,) = [p for p in (work / "runs").iterdir() if p.is_dir()]
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/macro_f1", "val/loss", "val/accuracy", "val/macro_f1", "val/precision_down",
                "val/recall_up", "train/lr", "train/windows_per_s", "test/macro_f1", "test_mlofi_lr/macro_f1",
                "test_queue_imbalance_lr/macro_f1", "test_majority/macro_f1", "test_deeplob/macro_f1"):
        assert tag in tags["scalars"], tag
    assert "val/confusion" in tags["images"] and "test/confusion" in tags["images"]
    assert acc.Scalars("train/windows_per_s")[0].value > 0
    # add_hparams writes its own event file in the run folder: the hyperparameters and final metrics
    hp = [EventAccumulator(str(f)) for f in sorted(run_dir.glob("events.out.tfevents.*"))]
    for a in hp:
        a.Reload()
    with_hp = [a for a in hp if "hparams" in a._plugin_to_tag_to_content]
    assert with_hp and "hparam/test_macro_f1" in with_hp[0].Tags()["scalars"]
    assert with_hp[0].Scalars("hparam/test_macro_f1")[0].value == pytest.approx(
        json.loads((run_dir / "result.json").read_text())["test"]["macro_f1"], abs=1e-6)
    # the checkpoint: promoted (no model before), loadable as the inference process loads it
    target = read_pointer(work / "ck")
    assert target is not None and len(list((work / "ck").glob("*.json"))) == 1
    ck = load_checkpoint(target, COMPAT)
    meta = ck.meta
    assert meta["trained"] is True
    assert meta["labels"]["horizon"] == 20 and meta["labels"]["threshold_bps"] == 0.5
    assert meta["labels"]["cost_threshold_bps"] > 10  # 2 x 5 bp taker fee + half-spread
    assert set(meta["metrics"]["test"]) == {"deeplob", "majority", "queue_imbalance_lr", "mlofi_lr"}
    assert all("macro_f1" in v and "accuracy" in v for v in meta["metrics"]["test"].values())
    assert 0 < meta["metrics"]["majority_floor"] < 1
    splits = meta["data"]["splits"]
    assert splits["train"]["end"] < splits["val"]["start"] < splits["val"]["end"] < splits["test"]["start"]
    assert meta["data"]["symbol"] == "SOLUSDT" and meta["data"]["records"] > 1000
    assert meta["gate"]["promote"] is True and "no current model" in meta["gate"]["reason"]
    assert "--seed 3" in meta["training"]["command"] and meta["training"]["seed"] == 3
    assert "majority-class floor" in r.stdout and "mlofi_lr" in r.stdout and "PROMOTE" in r.stdout


def test_the_inference_engine_serves_what_the_trainer_trained_on(trained, sim_raw):
    """Serving == training: the live runtime fed book records one at a time gives the
    probabilities the trained network gives on the trainer's own window."""
    work, _ = trained
    ck = load_checkpoint(read_pointer(work / "ck"), COMPAT)
    rec = ds.open_recordings([sim_raw], log=lambda s: None)
    rule = LabelRule(20, 0.5)
    part = ds.Part(1, 0, rec.files[1].n)
    d = ds.load_part(rec, part, ck.spec, rule)
    for k in (0, len(d.ends) // 2, len(d.ends) - 1):
        end = int(d.ends[k])
        with torch.inference_mode():
            logits = ck.script(torch.from_numpy(d.windows(np.array([k]))))[0].numpy()
        want = np.exp(logits - logits.max())
        want /= want.sum()
        rt = ModelRuntime(ck)
        for r in np.asarray(rec.files[1].open()[max(0, end - ck.spec.window - 40): end + 1]):
            rt.push(r)
        assert rt.ready
        assert np.allclose(rt.probabilities(), want, atol=2e-5)


def test_resume_continues_from_the_last_saved_epoch(trained, capsys, monkeypatch):
    work, _ = trained
    monkeypatch.chdir(work)
    (run_dir,) = [p for p in (work / "runs").iterdir() if p.is_dir()]
    data = json.loads(next((work / "ck").glob("*.json")).read_text())["data"]["paths"]
    args = list(TINY)
    args[args.index("--epochs") + 1] = "2"
    rc = script_module().main(["--data", *data, "--out", "ck2", "--logdir", "runs", "--seed", "3",
                               "--resume", str(run_dir), "--no-promote", *args])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    assert f"resumed {run_dir} at epoch 1" in out and "epoch 2:" in out and "epoch 1:" not in out
    assert torch.load(run_dir / "state.pt", weights_only=False)["epoch"] == 2
    assert read_pointer(work / "ck2") is None  # --no-promote: written, never pointed at
    assert len(list((work / "ck2").glob("*.json"))) == 1
    assert "--no-promote" in out


def test_gpu_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit, match="--gpu needs a CUDA device.*without --gpu"):
        script_module().main(["--gpu", "--data", str(tmp_path)])


def test_bad_settings_and_data_name_what_is_wrong(tmp_path, capsys):
    train = script_module()
    assert train.main(["--horizon", "0", "--data", str(tmp_path)]) == 2
    assert "model.horizon must be >= 1" in capsys.readouterr().err
    assert train.main(["--threshold", "lots", "--data", str(tmp_path)]) == 2
    assert "--threshold must be a number" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path / "none"), "--logdir", str(tmp_path / "runs")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_ddp_with_two_cpu_processes_gives_one_checkpoint(sim_raw, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    r = run_train(["--data", str(sim_raw), "--out", "ck", "--logdir", "runs", *TINY], tmp_path, timeout=300,
                  launcher=launcher)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    metas = list((tmp_path / "ck").glob("*.json"))
    assert len(metas) == 1 and len(list((tmp_path / "ck").glob("*.pt"))) == 1
    meta = load_checkpoint(read_pointer(tmp_path / "ck"), COMPAT).meta
    assert meta["training"]["world_size"] == 2
    assert r.stdout.count("epoch 1:") == 1  # only rank 0 reports
    assert len([p for p in (tmp_path / "runs").iterdir() if p.is_dir()]) == 1
