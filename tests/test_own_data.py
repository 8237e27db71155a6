"""Own VOC-format data end to end: split -> train -> evaluate -> QAT -> export -> detect, custom class names."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from own_data_fixtures import CLASSES, COLORS, ROTATED_ID, write_dataset

from codenet_pynq.training import datatools, evaluate, export, train
from codenet_pynq.training.config import load_config
from codenet_pynq.training.data.build import load_records

TINY = ["model.input_size=64", "model.width=0.5x", "model.decoder_channels=[32,32,32]", "model.head_channels=16",
        "solver.batch_size=4", "solver.precise_bn_iters=0", "solver.eval_period=0", "solver.log_period=2",
        "solver.warmup_iters=2", "solver.checkpoint_period=2", "data.num_workers=0", "init_weights=''",
        f"model.class_names=[{','.join(CLASSES)}]", "model.num_classes=2"]


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "my_dataset"
    objects = write_dataset(str(root))
    return root, objects


def _opts(root, out, *extra):
    return [*TINY, f"data.voc_root={root}", f"output_dir={out}", *extra]


def test_own_voc_dataset_end_to_end(dataset, tmp_path, capsys, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="codenet_pynq.train")
    torch.set_num_threads(1)
    root, _ = dataset
    assert not (root / "ImageSets").exists()
    assert datatools.main(["split", str(root), "--val", "0.34", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "train 8, val 4, trainval 12" in out
    assert datatools.main(["check", str(root), "--classes", ",".join(CLASSES)]) == 0
    out = capsys.readouterr().out
    assert "kayak" in out and "heron" in out and "EXIF-rotated photos: 1" in out and "problems: 0" in out

    run = tmp_path / "run"
    cfg = "configs/own_voc.yaml"
    assert train.main(["--config", cfg, "--no-progress", *_opts(root, run, "solver.max_iter=4")]) == 0
    out = capsys.readouterr().out
    assert "AP50 per class: kayak" in out and "heron" in out and "(classes: kayak, heron)" in out
    assert (run / "last_checkpoint.pth").is_file() and (run / "previous_checkpoint.pth").is_file()
    # --no-progress: plain log lines every log_period, and the class names at start
    assert "iter 2/4  loss" in caplog.text and "iter 4/4  loss" in caplog.text
    assert "training 8 images of 2 classes: kayak, heron" in caplog.text

    final = str(run / "model_final.pth")
    assert evaluate.main(["--config", cfg, "--weights", final, *_opts(root, run)]) == 0
    out = capsys.readouterr().out
    assert "AP50 per class: kayak" in out and "heron" in out

    qrun = tmp_path / "qat"
    qcfg = "configs/own_voc_w4a8.yaml"
    qopts = _opts(root, qrun, f"quant.init={final}", "quant.calib_batches=1", "solver.max_iter=2")
    assert train.main(["--config", qcfg, "--no-progress", *qopts]) == 0
    assert "(classes: kayak, heron)" in capsys.readouterr().out

    art = tmp_path / "own.codenet"
    assert export.main(["--config", qcfg, "--weights", str(qrun / "model_final.pth"), "--out", str(art), *qopts]) == 0
    assert "classes: kayak, heron" in capsys.readouterr().out

    from codenet_pynq.cli import main as cli_main

    det_dir = tmp_path / "det"
    assert cli_main(["detect", str(art), str(root / "JPEGImages"), "--out", str(det_dir), "--score-threshold", "0",
                     "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "kayak" in out or "heron" in out
    report = json.loads((det_dir / "detections.json").read_text())
    assert report["model"]["classes"] == CLASSES and report["summary"]["images"] == 12


def test_exif_rotated_photo_boxes_follow_the_pixels_the_model_sees(dataset):
    from codenet_pynq.image_io import read_image

    root, objects = dataset
    datatools.write_splits(str(root), val=0.25)
    cfg = load_config("configs/own_voc.yaml", _opts(root, root / "run", "data.voc_train_sets=[[trainval]]"))
    records, names = load_records(cfg.data, "train", cfg.model)
    assert names == CLASSES
    assert sorted(os.path.splitext(r["file"])[1] for r in records) == sorted([".jpg"] * 5 + [".JPG"] * 4 + [".png"] * 3)
    rec = next(r for r in records if os.path.basename(r["file"]).startswith(ROTATED_ID))
    seen = read_image(rec["file"])  # upright: 48 wide, 64 high
    assert seen.shape[:2] == (64, 48) and (rec["width"], rec["height"]) == (48, 64)
    # stored box (xmin-1, ymin-1, xmax, ymax) rotated 90 degrees clockwise: x' = H - y, y' = x
    name, x1, y1, x2, y2 = objects[ROTATED_ID][-1]  # drawn last, on top
    np.testing.assert_allclose(rec["boxes"][-1], [48 - y2, x1 - 1, 48 - (y1 - 1), x2])
    bx1, by1, bx2, by2 = rec["boxes"][-1].astype(int)
    inside = seen[by1 + 1:by2 - 1, bx1 + 1:bx2 - 1].astype(int)
    assert np.abs(inside - np.array(COLORS[name])).max() < 40  # the box covers the drawn object


def test_exif_photo_annotated_upright_is_kept(dataset):
    from own_data_fixtures import voc_xml

    root, objects = dataset
    # the same photo annotated on its upright pixels (48 x 64): boxes stay as they are
    upright = [("kayak", 5, 6, 20, 30)]
    (root / "Annotations" / f"{ROTATED_ID}.xml").write_text(voc_xml(ROTATED_ID + ".jpg", (48, 64), upright))
    datatools.write_splits(str(root), val=0.25)
    cfg = load_config("configs/own_voc.yaml", _opts(root, root / "run", "data.voc_train_sets=[[trainval]]"))
    records, _ = load_records(cfg.data, "train", cfg.model)
    rec = next(r for r in records if os.path.basename(r["file"]).startswith(ROTATED_ID))
    np.testing.assert_allclose(rec["boxes"][0], [4, 5, 20, 30])
    # a size that fits neither the stored (64 x 48) nor the upright image is refused, naming the file
    (root / "Annotations" / f"{ROTATED_ID}.xml").write_text(voc_xml(ROTATED_ID + ".jpg", (50, 50), upright))
    with pytest.raises(ValueError, match=f"{ROTATED_ID}.xml: <size> says 50 x 50.*EXIF orientation 6"):
        load_records(cfg.data, "train", cfg.model)


def test_class_count_mismatch_and_missing_image_are_refused(dataset, tmp_path, capsys):
    root, _ = dataset
    datatools.write_splits(str(root), val=0.25)
    cfg = "configs/own_voc.yaml"
    # one heatmap channel, no class names, two classes in the data
    args = ["--config", cfg, *_opts(root, tmp_path / "r1", "model.num_classes=1", "model.class_names=[]")]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "the dataset has 2 classes (heron, kayak) but the model has model.num_classes = 1" in err
    # a class name in an XML that the config does not list
    args = ["--config", cfg, *_opts(root, tmp_path / "r2", "model.num_classes=1", "model.class_names=[kayak]")]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "<name> 'heron' is not one of the config's class names (kayak)" in err and ".xml" in err
    # ... or skipped and counted when the config says so
    c = load_config(cfg, _opts(root, tmp_path / "r3", "model.num_classes=1", "model.class_names=[kayak]",
                               "data.unknown_classes=skip"))
    counts = {}
    records, names = load_records(c.data, "train", c.model, counts)
    assert names == ["kayak"] and counts["unknown:heron"] > 0
    assert all((r["labels"] == 0).all() for r in records)
    # a missing image: refused, naming the annotation and the id; never replaced by another image
    victim = next(p for p in sorted((root / "ImageSets" / "Main" / "train.txt").read_text().split()))
    for f in (root / "JPEGImages").iterdir():
        if f.stem == victim:
            f.unlink()
    assert train.main(["--config", cfg, *_opts(root, tmp_path / "r4")]) == 2
    err = capsys.readouterr().err
    assert f"{victim}.xml: no image file for id '{victim}'" in err and "Traceback" not in err
    c = load_config(cfg, _opts(root, tmp_path / "r5", "data.bad_images=skip"))
    counts = {}
    records, _ = load_records(c.data, "train", c.model, counts)
    assert counts["bad_images"] == 1 and victim not in {os.path.basename(r["file"]).split(".")[0] for r in records}


def test_init_reuses_backbone_and_reinitialises_the_heatmap_output(tmp_path, caplog):
    import logging

    from codenet_pynq.training.finetune import load_init_weights
    from codenet_pynq.training.models import build_model

    cfg = load_config("configs/shapes_default.yaml", ["model.num_classes=2", "model.class_names=[kayak,heron]"])
    model = build_model(cfg.model)
    with caplog.at_level(logging.INFO, logger="codenet_pynq.train"):
        fresh = load_init_weights(model, "shapes_default_float.npz")  # the shipped file, found by name
    assert fresh == ["hm.out.weight", "hm.out.bias"]
    assert "re-initialised (5 classes in the file, 2 now)" in caplog.text
    from codenet_pynq.training.weights import load_weights

    state, mcfg = load_weights("codenet_pynq/models/shapes_default_float.npz")
    assert mcfg["class_names"] == ["circle", "square", "triangle", "star", "cross"]
    assert torch.equal(model.state_dict()["backbone.conv1.0.weight"], state["backbone.conv1.0.weight"])
    assert torch.equal(model.state_dict()["wh.out.weight"], state["wh.out.weight"])


@pytest.mark.parametrize("entry", ["train", "evaluate", "export", "data"])
def test_entry_points_without_torch_say_how_to_install_the_training_extra(entry):
    """Without torch: train/eval/export print the install line; the data tool does not need torch at all."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            f"from codenet_pynq.training.entry import {entry}\nsys.exit({entry}(['--help']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if entry == "data":
        assert r.returncode == 0 and "split" in r.stdout, r.stderr
        return
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "'torch' is not installed" in r.stderr and 'pip install "codenet-pynq[train]"' in r.stderr


def test_check_reports_counts_empty_images_and_bad_boxes(dataset, capsys):
    from own_data_fixtures import voc_xml

    root, objects = dataset
    (root / "Annotations" / "img_001.xml").write_text(voc_xml("img_001.JPG", (64, 48), []))
    (root / "Annotations" / "img_002.xml").write_text(voc_xml("img_002.png", (64, 48), [("kayak", 30, 5, 10, 20)]))
    (root / "Annotations" / "img_003.xml").write_text(voc_xml("img_003.jpg", (64, 48), [("swan", 3, 5, 10, 20)]))
    assert datatools.main(["check", str(root), "--classes", "kayak,heron"]) == 1
    out = capsys.readouterr().out
    expected = {n: sum(o[0] == n for k, objs in objects.items() if k not in ("img_001", "img_002", "img_003")
                       for o in objs) for n in CLASSES}
    for name in CLASSES:
        assert re.search(rf"^  {name} +{expected[name]} objects$", out, re.M), out
    # img_003's only object has an unknown name: it is left out, so the image has no objects either
    assert "images without objects: 2 (img_001, img_003)" in out and "problems: 2" in out
    assert "img_002.xml: object 1 <bndbox> (30, 5, 10, 20) is inverted or empty" in out
    assert "img_003.xml: 1 object(s) named 'swan', not a class name" in out
    # split: seeded, reproducible, refuses to overwrite without --force
    assert datatools.main(["split", str(root), "--val", "0.25", "--seed", "3"]) == 0
    first = (root / "ImageSets" / "Main" / "val.txt").read_text()
    assert datatools.main(["split", str(root), "--val", "0.25", "--seed", "3"]) == 2
    assert "val.txt: already exists. Pass --force" in capsys.readouterr().err.replace("train.txt", "val.txt")
    assert datatools.main(["split", str(root), "--val", "0.25", "--seed", "3", "--force"]) == 0
    assert (root / "ImageSets" / "Main" / "val.txt").read_text() == first and len(first.split()) == 3
