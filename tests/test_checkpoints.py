"""Checkpoints: truncated, empty, wrong model, killed while saving -- no traceback, file named, nothing lost."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from own_data_fixtures import CLASSES, write_dataset

from codenet_pynq.training import checkpoint as ckpt_mod
from codenet_pynq.training import evaluate, export, train
from codenet_pynq.training.checkpoint import CheckpointError, load_checkpoint
from codenet_pynq.training.config import load_config
from codenet_pynq.training.datatools import write_splits
from codenet_pynq.training.train import Trainer

TINY = ["model.input_size=64", "model.width=0.5x", "model.decoder_channels=[32,32,32]", "model.head_channels=16",
        "solver.batch_size=2", "solver.precise_bn_iters=0", "solver.eval_period=0", "solver.log_period=1",
        "solver.warmup_iters=1", "solver.checkpoint_period=1", "data.num_workers=0", "init_weights=''",
        f"model.class_names=[{','.join(CLASSES)}]", "model.num_classes=2"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ck") / "ds")
    write_dataset(root, n=4)
    write_splits(root, val=0.25)
    return root


def _opts(data_root, out, *extra):
    return [*TINY, f"data.voc_root={data_root}", f"output_dir={out}", *extra]


def _trainer(data_root, out, resume=False, *extra):
    torch.set_num_threads(1)
    cfg = load_config("configs/own_voc.yaml", _opts(data_root, out, *extra))
    return Trainer(cfg, torch.device("cpu"), resume=resume, progress=False)


def _metrics(out):
    return [json.loads(x)["iteration"] for x in open(os.path.join(out, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def base_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    _trainer(data_root, out).run(max_iter=3)
    return out


@pytest.fixture()
def run3(base_run, tmp_path):
    """A copy of a run stopped after 3 iterations: last = 3, previous = 2."""
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    assert load_checkpoint(str(out / "last_checkpoint.pth"))["iteration"] == 3
    assert load_checkpoint(str(out / "previous_checkpoint.pth"))["iteration"] == 2
    return out


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupt_last_checkpoint_falls_back_to_the_previous(data_root, run3, caplog, damage):
    last = run3 / "last_checkpoint.pth"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"PK\x03\x04junk"}[damage])
    with caplog.at_level(logging.WARNING, logger="codenet_pynq.train"):
        t = _trainer(data_root, run3, True)
    assert t.start_iter == 2
    assert "last_checkpoint.pth" in caplog.text and "resuming from" in caplog.text
    assert "previous_checkpoint.pth (iteration 2)" in caplog.text
    # the metrics of iteration 3 are rewritten by the resumed run, and kept in a backup first
    assert _metrics(run3) == [1, 2]
    backups = [p for p in os.listdir(run3) if p.startswith("metrics.jsonl.") and p.endswith(".bak")]
    assert len(backups) == 1 and [json.loads(x)["iteration"] for x in open(run3 / backups[0])] == [1, 2, 3]
    assert (run3 / "last_checkpoint.pth.corrupt").is_file()  # moved aside, not deleted
    assert [h["iteration"] for h in t.run(max_iter=4)] == [3, 4]
    assert load_checkpoint(str(run3 / "last_checkpoint.pth"))["iteration"] == 4
    assert load_checkpoint(str(run3 / "previous_checkpoint.pth"))["iteration"] == 3


def test_both_checkpoints_corrupt_is_one_clear_error(data_root, run3, capsys):
    (run3 / "last_checkpoint.pth").write_bytes(b"")
    prev = run3 / "previous_checkpoint.pth"
    prev.write_bytes(prev.read_bytes()[:100])
    rc = train.main(["--config", "configs/own_voc.yaml", "--resume", *_opts(data_root, run3)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "no readable checkpoint to resume from" in err
    assert "last_checkpoint.pth: the checkpoint is empty" in err and "previous_checkpoint.pth: not a readable" in err
    assert _metrics(run3) == [1, 2, 3]  # nothing touched


def test_checkpoint_of_another_model_is_refused_and_kept(data_root, run3, capsys):
    before = (run3 / "last_checkpoint.pth").read_bytes()
    rc = train.main(["--config", "configs/own_voc.yaml", "--resume", *_opts(data_root, run3, "model.head_channels=32")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "last_checkpoint.pth: does not fit the model of this config" in err and "another output_dir" in err
    assert (run3 / "last_checkpoint.pth").read_bytes() == before and _metrics(run3) == [1, 2, 3]
    # evaluation and export of a truncated or foreign file: the same kind of message
    (run3 / "model_final.pth").write_bytes(before[:50])
    for main, extra in ((evaluate.main, ["--weights"]), (export.main, ["--out", str(run3 / "x.codenet"), "--weights"])):
        rc = main(["--config", "configs/own_voc.yaml", *extra, str(run3 / "model_final.pth"), *_opts(data_root, run3)])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and "model_final.pth: not a readable codenet-pynq checkpoint" in err


def test_interrupted_save_leaves_a_complete_checkpoint(data_root, run3, monkeypatch, caplog):
    t = _trainer(data_root, run3, True)
    real_save = torch.save

    def dying_save(obj, f, *a, **k):  # writes part of the file, then the process "dies"
        real_save(obj, f, *a, **k)
        f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        t.save(4)
    monkeypatch.undo()
    assert load_checkpoint(str(run3 / "last_checkpoint.pth"))["iteration"] == 3
    assert not [p for p in os.listdir(run3) if p.endswith(".tmp")]
    # killed between the two renames: last already moved to previous, the new one not in place yet
    real_replace = os.replace
    calls = []

    def dying_replace(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(a, b)

    monkeypatch.setattr(ckpt_mod.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        t.save(4)
    monkeypatch.undo()
    assert not (run3 / "last_checkpoint.pth").exists()
    with caplog.at_level(logging.WARNING, logger="codenet_pynq.train"):
        assert _trainer(data_root, run3, True).start_iter == 3
    assert "last_checkpoint.pth is missing" in caplog.text


def test_process_killed_while_saving(data_root, run3):
    # a real kill -9 in the middle of torch.save: the partial temp file never replaces the checkpoint
    code = (
        "import os, torch\n"
        "from codenet_pynq.training import checkpoint as c\n"
        "real = torch.save\n"
        "def save(obj, f, *a, **k):\n"
        "    f.write(b'partial'); f.flush(); os.kill(os.getpid(), 9)\n"
        "c.torch.save = save\n"
        f"c.rotate_and_save({{'model': {{}}, 'iteration': 99}}, {str(run3)!r})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == -9
    assert load_checkpoint(str(run3 / "last_checkpoint.pth"))["iteration"] == 3
    assert load_checkpoint(str(run3 / "previous_checkpoint.pth"))["iteration"] == 2
    assert _trainer(data_root, run3, True).start_iter == 3


def test_pickled_objects_are_never_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointError, match="evil.pth: not a readable codenet-pynq checkpoint"):
        load_checkpoint(str(path))
    assert not (tmp_path / "pwned").exists()
    from codenet_pynq.training.weights import load_weights

    npz = tmp_path / "evil.npz"
    np.savez(npz, __codenet_weights__=np.array([Evil()], dtype=object))
    with pytest.raises(CheckpointError, match="evil.npz: not a readable weights file"):
        load_weights(str(npz))
    (tmp_path / "cut.npz").write_bytes(open("codenet_pynq/models/shapes_default_float.npz", "rb").read()[:1000])
    with pytest.raises(CheckpointError, match="cut.npz: not a readable weights file"):
        load_weights(str(tmp_path / "cut.npz"))
    assert not (tmp_path / "pwned").exists()
