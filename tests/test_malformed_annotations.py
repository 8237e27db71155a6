"""Malformed VOC and COCO annotations through ``codenet-pynq-train``: exit 2, no traceback, file and field named."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from own_data_fixtures import CLASSES, voc_xml, write_dataset

from codenet_pynq.training import train

TINY = ["model.input_size=64", "model.width=0.5x", "model.decoder_channels=[32,32,32]", "model.head_channels=16",
        "solver.max_iter=1", "data.num_workers=0", "init_weights=''"]

GOOD = [("kayak", 5, 6, 30, 20)]


def _xml(**kw) -> str:
    return voc_xml("img_000.jpg", kw.pop("size", (64, 48)), kw.pop("objects", GOOD))


def _obj(body: str) -> str:
    """An annotation with one object whose inner XML is ``body``."""
    return ("<annotation><size><width>64</width><height>48</height><depth>3</depth></size>"
            f"<object>{body}</object></annotation>")


BOX = "<bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax><ymax>20</ymax></bndbox>"

# (case id, how to break img_000, expected text in the message)
VOC_CASES = [
    ("truncated-xml", lambda r: _write(r, "Annotations/img_000.xml", _xml()[:-30]), "img_000.xml: malformed XML"),
    ("empty-xml", lambda r: _write(r, "Annotations/img_000.xml", ""), "img_000.xml: the annotation file is empty"),
    ("non-utf8", lambda r: _write(r, "Annotations/img_000.xml", _xml().replace("kayak", "kay\udcffak"),
                                  errors="surrogateescape"), "img_000.xml: malformed XML"),
    ("deep-nesting", lambda r: _write(r, "Annotations/img_000.xml",
                                      "<annotation>" + "<x>" * 50000 + "</x>" * 50000 + "</annotation>"),
     "img_000.xml: <size> is missing"),
    ("entities", lambda r: _write(r, "Annotations/img_000.xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]>'
                                  + _xml()), "img_000.xml: DTD/entity declarations are not accepted"),
    ("wrong-root", lambda r: _write(r, "Annotations/img_000.xml", "<html><body/></html>"),
     "img_000.xml: the root element is <html>"),
    ("no-size", lambda r: _write(r, "Annotations/img_000.xml", _xml().replace("<size>", "<sz>").replace("</size>",
                                                                                                   "</sz>")),
     "img_000.xml: <size> is missing"),
    ("no-width", lambda r: _write(r, "Annotations/img_000.xml", _xml().replace("<width>64</width>", "")),
     "img_000.xml: <size><width> is missing"),
    ("width-text", lambda r: _write(r, "Annotations/img_000.xml", _xml().replace("<width>64", "<width>wide")),
     "img_000.xml: <size><width> is not a number"),
    ("width-zero", lambda r: _write(r, "Annotations/img_000.xml", _xml(size=(0, 48))),
     "img_000.xml: <size> must be positive integers"),
    ("width-fraction", lambda r: _write(r, "Annotations/img_000.xml", _xml().replace("<width>64", "<width>64.5")),
     "img_000.xml: <size> must be positive integers"),
    ("width-nan", lambda r: _write(r, "Annotations/img_000.xml", _xml().replace("<width>64", "<width>nan")),
     "img_000.xml: <size><width> is not a finite number"),
    ("no-name", lambda r: _write(r, "Annotations/img_000.xml", _obj(BOX)), "img_000.xml: object 1 <name> is missing"),
    ("empty-name", lambda r: _write(r, "Annotations/img_000.xml", _obj("<name> </name>" + BOX)),
     "img_000.xml: object 1 <name> is missing or empty"),
    ("unknown-class", lambda r: _write(r, "Annotations/img_000.xml", _xml(objects=[("dragon", 5, 6, 30, 20)])),
     "img_000.xml: object 1 <name> 'dragon' is not one of the config's class names"),
    ("no-bndbox", lambda r: _write(r, "Annotations/img_000.xml", _obj("<name>kayak</name>")),
     "img_000.xml: object 1 <bndbox> is missing"),
    ("no-xmin", lambda r: _write(r, "Annotations/img_000.xml", _obj("<name>kayak</name>" + BOX.replace(
        "<xmin>5</xmin>", ""))), "img_000.xml: object 1 <bndbox><xmin> is missing"),
    ("xmin-text", lambda r: _write(r, "Annotations/img_000.xml", _obj("<name>kayak</name>" + BOX.replace(
        "<xmin>5", "<xmin>five"))), "img_000.xml: object 1 <bndbox><xmin> is not a number"),
    ("xmax-inf", lambda r: _write(r, "Annotations/img_000.xml", _obj("<name>kayak</name>" + BOX.replace(
        "<xmax>30", "<xmax>inf"))), "img_000.xml: object 1 <bndbox><xmax> is not a finite number"),
    ("inverted-x", lambda r: _write(r, "Annotations/img_000.xml", _xml(objects=[("kayak", 30, 6, 5, 20)])),
     "img_000.xml: object 1 <bndbox> (30, 6, 5, 20) is inverted or empty"),
    ("inverted-y", lambda r: _write(r, "Annotations/img_000.xml", _xml(objects=[("kayak", 5, 20, 30, 6)])),
     "img_000.xml: object 1 <bndbox> (5, 20, 30, 6) is inverted or empty"),
    ("negative-outside", lambda r: _write(r, "Annotations/img_000.xml", _xml(objects=[("kayak", -20, -9, -5, -1)])),
     "img_000.xml: object 1 <bndbox> (-20, -9, -5, -1) lies outside the 64 x 48 image"),
    ("beyond-image", lambda r: _write(r, "Annotations/img_000.xml", _xml(objects=[("kayak", 70, 6, 90, 20)])),
     "lies outside the 64 x 48 image"),
    ("difficult-2", lambda r: _write(r, "Annotations/img_000.xml", _obj("<name>kayak</name><difficult>2</difficult>"
                                                                       + BOX)),
     "img_000.xml: object 1 <difficult> must be 0 or 1"),
    ("xml-missing", lambda r: os.unlink(os.path.join(r, "Annotations", "img_000.xml")),
     "img_000.xml: annotation file not found"),
    ("image-missing", lambda r: os.unlink(os.path.join(r, "JPEGImages", "img_000.jpg")),
     "img_000.xml: no image file for id 'img_000'"),
    ("image-not-image", lambda r: _write(r, "JPEGImages/img_000.jpg", "<html>404</html>"),
     "img_000.jpg: the image file of"),
    ("image-empty", lambda r: _write(r, "JPEGImages/img_000.jpg", ""), "img_000.jpg: the image file of"),
    ("size-mismatch", lambda r: _write(r, "Annotations/img_000.xml", _xml(size=(100, 48))),
     "img_000.xml: <size> says 100 x 48 but the image is 64 x 48"),
    ("two-images", lambda r: cv2.imwrite(os.path.join(r, "JPEGImages", "img_000.png"), np.zeros((48, 64, 3), np.uint8)),
     "several image files for id 'img_000'"),
    ("no-split-file", lambda r: os.unlink(os.path.join(r, "ImageSets", "Main", "train.txt")),
     "train.txt: image set file not found"),
]


def _write(root: str, rel: str, text: str, errors: str = "strict") -> None:
    with open(os.path.join(root, rel), "w", encoding="utf-8", errors=errors) as f:
        f.write(text)


@pytest.fixture()
def voc_root(tmp_path):
    root = str(tmp_path / "ds")
    write_dataset(root, n=3)
    os.makedirs(os.path.join(root, "ImageSets", "Main"))
    for s in ("train", "val"):
        _write(root, f"ImageSets/Main/{s}.txt", "img_000\nimg_001\nimg_002\n")
    _write(root, "Annotations/img_000.xml", _xml())
    cv2.imwrite(os.path.join(root, "JPEGImages", "img_000.jpg"), np.zeros((48, 64, 3), np.uint8))
    return root


def _train(capsys, config, *opts) -> str:
    rc = train.main(["--config", config, *TINY, *opts])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("codenet-pynq-train: error: ")
    assert len(err.strip().splitlines()) == 1  # one paragraph
    return err


def test_the_unbroken_voc_dataset_loads(voc_root):
    from codenet_pynq.training.config import load_config
    from codenet_pynq.training.data.build import load_records

    cfg = load_config("configs/own_voc.yaml", TINY + [f"data.voc_root={voc_root}", "model.class_names=[kayak,heron]"])
    records, names = load_records(cfg.data, "train", cfg.model)
    assert len(records) == 3 and names == CLASSES


@pytest.mark.parametrize("case, breaks, expected", VOC_CASES, ids=[c[0] for c in VOC_CASES])
def test_malformed_voc(voc_root, tmp_path, capsys, case, breaks, expected):
    breaks(voc_root)
    err = _train(capsys, "configs/own_voc.yaml", f"data.voc_root={voc_root}", f"output_dir={tmp_path / 'run'}",
                 "model.class_names=[kayak,heron]")
    assert expected in err
    assert not (tmp_path / "run" / "last_checkpoint.pth").exists()


def _coco(**changes):
    d = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 20, 10], "iscrowd": 0}],
         "categories": [{"id": 1, "name": "kayak"}, {"id": 2, "name": "heron"}]}
    d.update(changes)
    return json.dumps(d)


def _ann(**kw):
    a = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 20, 10], "iscrowd": 0}
    a.update(kw)
    return [a]


COCO_CASES = [
    ("invalid-json", _coco()[:-5], "train.json: not valid JSON"),
    ("non-utf8", b'{"images": "\xff\xfe"}', "train.json: is not UTF-8 text"),
    ("deep-nesting", "[" * 100000 + "]" * 100000, "train.json: "),
    ("top-level-list", "[]", "train.json: top level must be an object"),
    ("no-categories", _coco(categories=None), "train.json: 'categories' must be a list"),
    ("category-id-text", _coco(categories=[{"id": "1", "name": "kayak"}]), "train.json: categories[0].id must be"),
    ("category-duplicated", _coco(categories=[{"id": 1, "name": "kayak"}, {"id": 1, "name": "heron"}]),
     "train.json: categories[1].id 1 is duplicated"),
    ("image-no-file-name", _coco(images=[{"id": 1, "width": 64, "height": 48}]),
     "train.json: images[0].file_name must be"),
    ("image-negative-width", _coco(images=[{"id": 1, "file_name": "a.jpg", "width": -64, "height": 48}]),
     "train.json: images[0].width must be a positive integer"),
    ("image-duplicated", _coco(images=[{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}] * 2),
     "train.json: images[1].id 1 is duplicated"),
    ("annotation-unknown-image", _coco(annotations=_ann(image_id=7)), "train.json: annotations[0].image_id 7"),
    ("annotation-unknown-category", _coco(annotations=_ann(category_id=9)),
     "train.json: annotations[0].category_id 9 is not in 'categories'"),
    ("annotation-list-image-id", _coco(annotations=_ann(image_id=[1])), "train.json: annotations[0].image_id [1]"),
    ("bbox-three", _coco(annotations=_ann(bbox=[1, 2, 3])), "train.json: annotations[0].bbox must be 4 numbers"),
    ("bbox-text", _coco(annotations=_ann(bbox=[1, 2, "3", 4])), "train.json: annotations[0].bbox must be 4 numbers"),
    ("bbox-negative", _coco(annotations=_ann(bbox=[1, 2, -3, 4])), "train.json: annotations[0].bbox has a negative"),
    ("annotation-not-object", _coco(annotations=[[1, 2]]), "train.json: annotations[0] must be an object"),
    ("image-file-missing", _coco(images=[{"id": 1, "file_name": "gone.jpg", "width": 64, "height": 48}]),
     "gone.jpg: image file of image id 1 not found"),
    ("class-count", _coco(categories=[{"id": 1, "name": "kayak"}, {"id": 2, "name": "heron"},
                                      {"id": 3, "name": "swan"}]),
     "train.json: the dataset has 3 classes (kayak, heron, swan) but the model has model.num_classes = 2"),
]


@pytest.mark.parametrize("case, content, expected", COCO_CASES, ids=[c[0] for c in COCO_CASES])
def test_malformed_coco(tmp_path, capsys, case, content, expected):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "train.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "val.json").write_text(_coco())
    err = _train(capsys, "configs/shapes_default.yaml", "data.dataset=coco", "data.generate_shapes={}",
                 f"data.train_json={tmp_path / 'train.json'}", f"data.val_json={tmp_path / 'val.json'}",
                 "model.num_classes=2", "model.class_names=[]", f"output_dir={tmp_path / 'run'}")
    assert expected in err


def test_the_unbroken_coco_file_loads(tmp_path):
    from codenet_pynq.training.config import load_config
    from codenet_pynq.training.data.build import load_records

    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "train.json").write_text(_coco())
    cfg = load_config("configs/shapes_default.yaml", TINY + [
        "data.dataset=coco", "data.generate_shapes={}", f"data.train_json={tmp_path / 'train.json'}",
        "model.num_classes=2", "model.class_names=[]"])
    records, names = load_records(cfg.data, "train", cfg.model)
    assert names == CLASSES and records[0]["boxes"].tolist() == [[4, 5, 24, 15]]


def test_unreadable_image_found_by_a_dataloader_worker_is_one_paragraph(voc_root, tmp_path, capsys):
    # the header passes the load-time check, the pixel data is corrupt: found while training, in a worker
    data = open(os.path.join(voc_root, "JPEGImages", "img_000.jpg"), "rb").read()
    with open(os.path.join(voc_root, "JPEGImages", "img_000.jpg"), "wb") as f:
        f.write(data[:200] + b"\x00" * 50)
    err = _train(capsys, "configs/own_voc.yaml", f"data.voc_root={voc_root}", f"output_dir={tmp_path / 'run'}",
                 "model.class_names=[kayak,heron]", "data.num_workers=1", "solver.batch_size=3",
                 "solver.precise_bn_iters=0", "solver.eval_period=0", "--no-progress")
    assert "JPEGImages/img_000.jpg: " in err and "replace the image" in err
    assert "Original Traceback" not in err and "DataLoader worker" not in err
