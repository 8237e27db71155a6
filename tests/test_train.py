"""Trainer: loss goes down, exact kill-and-resume, NaN stop, config errors, DDP smoke run."""

import json
import os
import subprocess
import sys

import pytest
import torch

from codenet_pynq.training.config import load_config
from codenet_pynq.training.data.shapes import generate_shapes
from codenet_pynq.training.models.blocks import DeformConv
from codenet_pynq.training.train import Trainer, TrainingDiverged, lr_factor

TINY = ["model.input_size=64", "model.width=0.5x", "model.decoder_channels=[32,32,32]", "model.head_channels=16",
        "solver.batch_size=4", "solver.precise_bn_iters=0", "solver.eval_period=0", "solver.log_period=1",
        "solver.warmup_iters=2", "solver.checkpoint_period=3", "data.num_workers=0", "data.generate_shapes={}"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    train = generate_shapes(str(root), 24, ((64, 96), (64, 96)), seed=1, split_name="train")
    val = generate_shapes(str(root), 4, ((64, 96), (64, 96)), seed=1, split_name="val")
    return train, val


def config(shapes, out, *extra):
    train, val = shapes
    return load_config("configs/shapes_default.yaml", TINY + [f"data.train_json={train}", f"data.val_json={val}",
                                                              f"output_dir={out}", *extra])


def test_tiny_training_lowers_the_loss(shapes, tmp_path):
    torch.set_num_threads(1)
    one_batch = generate_shapes(str(tmp_path / "data"), 4, ((64, 96), (64, 96)), seed=2, split_name="train")
    cfg = config((one_batch, shapes[1]), tmp_path, "solver.base_lr=0.005", "data.augment=false", "solver.steps=[100]")
    trainer = Trainer(cfg, torch.device("cpu"), progress=False)
    hist = trainer.run(max_iter=20)
    first = sum(h["loss"] for h in hist[:5]) / 5
    last = sum(h["loss"] for h in hist[-5:]) / 5
    assert last < 0.9 * first, (first, last)
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert lines[-1]["iteration"] == 20 and "images_per_s" in lines[-1]
    assert (tmp_path / "model_final.pth").is_file()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_kill_and_resume_reproduces_the_next_step(shapes, tmp_path):
    torch.set_num_threads(1)
    full = Trainer(config(shapes, tmp_path / "a"), torch.device("cpu"), progress=False).run(max_iter=5)
    Trainer(config(shapes, tmp_path / "b"), torch.device("cpu"), progress=False).run(max_iter=3)  # "killed" at 3
    resumed = Trainer(config(shapes, tmp_path / "b"), torch.device("cpu"), resume=True, progress=False)
    assert resumed.start_iter == 3
    rest = resumed.run(max_iter=5)
    assert [h["iteration"] for h in rest] == [4, 5]
    for a, b in zip(full[3:], rest):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    its = [json.loads(x)["iteration"] for x in open(tmp_path / "b" / "metrics.jsonl")]
    assert its == sorted(set(its))  # the resumed run rewrote what came after its checkpoint


def test_nan_loss_stops_with_a_clear_message(shapes, tmp_path):
    cfg = config(shapes, tmp_path)
    trainer = Trainer(cfg, torch.device("cpu"), progress=False)
    with torch.no_grad():
        trainer.model.hm.out.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="lower solver.base_lr"):
        trainer.run(max_iter=1)


def test_lr_schedule_warmup_and_steps(shapes, tmp_path):
    cfg = config(shapes, tmp_path, "solver.warmup_iters=10", "solver.warmup_factor=0.1", "solver.steps=[20,30]")
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(25, cfg) == pytest.approx(0.1)
    assert lr_factor(35, cfg) == pytest.approx(0.01)


def test_norm_layers_get_no_weight_decay(shapes, tmp_path):
    trainer = Trainer(config(shapes, tmp_path), torch.device("cpu"), progress=False)
    decays = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    bn = trainer.model.backbone.conv1[1]
    assert decays[id(bn.weight)] == 0.0 and decays[id(trainer.model.backbone.conv1[0].weight)] > 0


def test_offset_convs_learn_at_their_lr_multiplier(shapes, tmp_path):
    torch.set_num_threads(1)
    cfg = config(shapes, tmp_path, "solver.offset_lr_mult=0.1", "solver.warmup_iters=0")
    trainer = Trainer(cfg, torch.device("cpu"), progress=False)
    trainer.run(max_iter=1)
    offset_ids = {id(m.offset.weight) for m in trainer.model.modules() if isinstance(m, DeformConv)}
    assert offset_ids
    lrs = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(lrs[i] == pytest.approx(0.1 * cfg.solver.base_lr) for i in offset_ids)
    assert lrs[id(trainer.model.backbone.conv1[0].weight)] == pytest.approx(cfg.solver.base_lr)


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("solver:\n  max_itr: 3\n")
    with pytest.raises(ValueError, match="max_itr"):
        load_config(str(bad))
    with pytest.raises(ValueError, match="model.variant"):
        load_config("configs/shapes_default.yaml", ["model.variant=nope"])
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "missing.yaml"))


def test_seed_configs_load():
    names = sorted(os.listdir("configs"))
    assert len([n for n in names if n.startswith("voc_")]) >= 7
    for name in names:
        cfg = load_config(os.path.join("configs", name))
        assert cfg.model.num_classes == len(cfg.model.class_names)


def test_ddp_two_processes_on_gloo(shapes, tmp_path):
    train, val = shapes
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "codenet_pynq.training.train", "--config", "configs/shapes_default.yaml", "--no-progress",
           "--threads", "1", "--device", "cpu", *TINY, f"data.train_json={train}", f"data.val_json={val}",
           f"output_dir={tmp_path}", "solver.max_iter=2", "solver.checkpoint_period=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "model_final.pth").is_file()
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert any(rec.get("iteration") == 2 for rec in lines)


def test_eval_only_reads_qat_checkpoints_and_names_a_mismatch(shapes, tmp_path, capsys):
    from codenet_pynq.training.train import main

    torch.set_num_threads(1)
    Trainer(config(shapes, tmp_path / "float"), torch.device("cpu"), progress=False).run(max_iter=2)
    qat = [f"quant.init={tmp_path / 'float' / 'model_final.pth'}", "quant.enabled=true", "quant.calib_batches=1"]
    Trainer(config(shapes, tmp_path / "qat", *qat), torch.device("cpu"), progress=False).run(max_iter=2)
    train, val = shapes
    common = ["--config", "configs/shapes_default.yaml", "--eval-only", "--no-progress", *TINY,
              f"data.train_json={train}", f"data.val_json={val}"]
    assert main(common + [f"output_dir={tmp_path / 'qat'}", *qat]) == 0
    assert '"AP50"' in capsys.readouterr().out
    assert main(common + [f"output_dir={tmp_path / 'qat'}"]) == 2  # a QAT checkpoint under a float config
    err = capsys.readouterr().err
    assert "model_final.pth" in err and "quant.enabled must match" in err


def test_freeze_bn_keeps_the_statistics(shapes, tmp_path):
    torch.set_num_threads(1)
    trainer = Trainer(config(shapes, tmp_path, "solver.freeze_bn=true", "solver.precise_bn_iters=2"),
                      torch.device("cpu"), progress=False)
    bns = [m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    trainer.run(max_iter=2)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    assert trainer.model.training and not any(m.training for m in bns)
    loose = Trainer(config(shapes, tmp_path / "loose"), torch.device("cpu"), progress=False)
    loose.run(max_iter=1)
    assert any(not torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
               for m in loose.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
