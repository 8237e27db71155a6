"""VOC / COCO loaders, the shapes generator and the torch dataset."""

import contextlib
import io
import json
import os
import re

import cv2
import numpy as np
import pytest
import torch

from codenet_pynq.image_io import read_image
from codenet_pynq.training.data import shapes as shapes_mod
from codenet_pynq.training.data.coco import load_coco, write_coco_json
from codenet_pynq.training.data.dataset import DetectionDataset, collate_fn
from codenet_pynq.training.data.records import AnnotationError, make_record, validate_record
from codenet_pynq.training.data.shapes import SHAPES_CLASSES, generate_shapes, make_shapes_image
from codenet_pynq.training.data.voc import VOC_CLASSES, load_voc
from codenet_pynq.transforms import get_affine_transform

# ---------------------------------------------------------------- records


def test_validate_record_names_source_and_field():
    rec = make_record("a.jpg", 1, 10, 10, [[0, 0, 5, 5]], [0])
    assert validate_record(rec, "x.json") is rec
    bad = dict(rec, boxes=np.array([[3, 0, 2, 5]], np.float32))
    with pytest.raises(AnnotationError, match=r"x\.json: boxes\[0\].*degenerate"):
        validate_record(bad, "x.json")
    with pytest.raises(AnnotationError, match=r"x\.json: labels\[0\] = 0 is out of range"):
        validate_record(dict(rec, labels=np.array([0])), "x.json", num_classes=0)
    with pytest.raises(AnnotationError, match="missing field 'width'"):
        validate_record({k: v for k, v in rec.items() if k != "width"}, "x.json")
    with pytest.raises(AnnotationError, match="'labels' must be an int64"):
        validate_record(dict(rec, labels=np.array([0], np.int32)), "x.json")
    assert isinstance(AnnotationError("m"), ValueError)


# ---------------------------------------------------------------- VOC


def _voc_xml(objects, size=(100, 80)):
    objs = ""
    for name, box, difficult in objects:
        coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        objs += f"<object><name>{name}</name><pose>Left</pose>{diff}<bndbox>{coords}</bndbox></object>"
    w, h = size
    return f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"


def _voc_tree(tmp_path, files, image_set="trainval", year="2007"):
    base = tmp_path / "VOCdevkit" / f"VOC{year}"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "JPEGImages").mkdir(parents=True)
    for name, xml in files.items():
        (base / "Annotations" / f"{name}.xml").write_text(xml)
        size = re.search(r"<width>(\d+)</width><height>(\d+)</height>", xml)
        w, h = (int(size.group(1)), int(size.group(2))) if size else (10, 10)
        cv2.imwrite(str(base / "JPEGImages" / f"{name}.jpg"), np.zeros((h, w, 3), np.uint8))
    (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{n}\n" for n in files))
    return tmp_path / "VOCdevkit"


def test_load_voc_boxes_difficult_and_ids(tmp_path):
    root = _voc_tree(tmp_path, {
        "000005": _voc_xml([("chair", (11, 21, 50, 60), 0), ("person", (1, 1, 100, 80), 1)]),
        "000007": _voc_xml([("car", (5, 6, 7, 8), None)], size=(64, 48)),
    })  # fmt: skip
    recs = load_voc(str(root), [("2007", "trainval")])
    assert [r["image_id"] for r in recs] == [5, 7]
    r = recs[0]
    assert r["file"].endswith(os.path.join("VOC2007", "JPEGImages", "000005.jpg"))
    assert (r["width"], r["height"]) == (100, 80)
    np.testing.assert_array_equal(r["boxes"], [[10, 20, 50, 60], [0, 0, 100, 80]])
    assert r["boxes"].dtype == np.float32 and r["labels"].dtype == np.int64
    assert r["labels"].tolist() == [VOC_CLASSES.index("chair"), VOC_CLASSES.index("person")]
    assert r["difficult"].tolist() == [False, True]
    assert recs[1]["difficult"].tolist() == [False]  # no <difficult> tag: not difficult
    # the parent of VOCdevkit works too, and difficult objects can be left out
    easy = load_voc(str(tmp_path), [("2007", "trainval")], keep_difficult=False)
    assert easy[0]["labels"].tolist() == [VOC_CLASSES.index("chair")]
    with pytest.raises(FileNotFoundError, match="test.txt"):
        load_voc(str(root), [("2007", "test")])


@pytest.mark.parametrize(
    "xml, message",
    [
        (_voc_xml([("dog", (1, 1, 5, 5), 0), ("cat", (1, 1, "abc", 5), 0)]),
         r"Annotations/000009\.xml: object 2 <bndbox><xmax> is not a number"),
        (_voc_xml([("dog", (1, 1, 5, 5), 0)])[:-20], r"Annotations/000009\.xml: malformed XML"),
        (_voc_xml([("dragon", (1, 1, 5, 5), 0)]), r"000009\.xml: object 1 <name> 'dragon' is not one of the config's class names"),
        (_voc_xml([("dog", (9, 1, 5, 5), 0)]), r"000009\.xml: object 1 <bndbox> .* is inverted or empty"),
        (_voc_xml([("dog", (1, 1, 5, 5), 2)]), r"000009\.xml: object 1 <difficult> must be 0 or 1"),
        ("<annotation><object/></annotation>", r"000009\.xml: <size> is missing"),
        (_voc_xml([("dog", (1, 1, 5, 5), 0)]).replace("<ymin>1</ymin>", ""),
         r"000009\.xml: object 1 <bndbox><ymin> is missing"),
    ],
)  # fmt: skip
def test_load_voc_errors_name_file_and_field(tmp_path, xml, message):
    root = _voc_tree(tmp_path, {"000009": xml})
    with pytest.raises(AnnotationError, match=message):
        load_voc(str(root))


# ---------------------------------------------------------------- COCO


def _records():
    return [
        make_record("/data/imgs/a.jpg", 3, 100, 80, [[10.5, 20.25, 50, 60], [0, 0, 100, 80]], [1, 0], [False, True]),
        make_record("/data/imgs/sub/b.jpg", 8, 64, 48),
        make_record("/data/imgs/c.jpg", 9, 64, 48, [[1, 2, 3.3, 4.7]], [2]),
    ]


def test_coco_roundtrip_and_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = ["cat", "dog", "bird"]
    path = write_coco_json(_records(), names, str(tmp_path / "gt.json"), image_root="/data/imgs")
    assert not [p for p in os.listdir(tmp_path) if p != "gt.json"]  # no temp file left behind
    root = tmp_path / "images"
    recs, got_names = load_coco(path, str(root))
    assert got_names == names
    assert [r["file"] for r in recs] == [str(root / "a.jpg"), str(root / "sub" / "b.jpg"), str(root / "c.jpg")]
    for a, b in zip(recs, _records()):
        assert (a["image_id"], a["width"], a["height"]) == (b["image_id"], b["width"], b["height"])
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-4)
        assert a["labels"].tolist() == b["labels"].tolist()
        assert a["difficult"].tolist() == b["difficult"].tolist()
        validate_record(a, "roundtrip")

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(path)
        assert gt.getCatIds() == [1, 2, 3] and sorted(gt.getImgIds()) == [3, 8, 9]
        ann = gt.loadAnns(gt.getAnnIds(imgIds=[3]))[0]
        assert ann["bbox"] == [10.5, 20.25, 39.5, 39.75] and ann["category_id"] == 2 and ann["iscrowd"] == 0
        assert ann["area"] == pytest.approx(39.5 * 39.75)
        dets = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
                for a in gt.dataset["annotations"]]
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def _coco_file(tmp_path, data):
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data))
    return str(p)


def _coco_data():
    return {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 50, "height": 40},
                   {"id": 2, "file_name": "y.jpg", "width": 30, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [40, 30, 20, 20], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [0, 0, 50, 40], "iscrowd": 1},
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [60, 0, 5, 5]},
        ],
        "categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}],
    }  # fmt: skip


def test_load_coco_labels_crowd_and_clipping(tmp_path):
    recs, names = load_coco(_coco_file(tmp_path, _coco_data()), str(tmp_path))
    assert names == ["a", "b"]  # category ids sorted: 3 -> 0, 7 -> 1
    r = recs[0]
    np.testing.assert_array_equal(r["boxes"], [[1, 2, 11, 22], [40, 30, 50, 40]])  # clipped to the image
    assert r["labels"].tolist() == [1, 0]  # crowd and outside-the-image boxes left out
    assert len(recs[1]["boxes"]) == 0 and recs[1]["file"] == str(tmp_path / "y.jpg")
    recs2, names2 = load_coco(_coco_file(tmp_path, _coco_data()), str(tmp_path), class_names=["z", "b", "a"])
    assert names2 == ["z", "b", "a"] and recs2[0]["labels"].tolist() == [1, 2]
    with pytest.raises(AnnotationError, match=r"categories\[1\]\.name 'a' is not one of the config's class names"):
        load_coco(_coco_file(tmp_path, _coco_data()), str(tmp_path), class_names=["b"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), r"annotations\[1\]\.bbox must be 4 numbers"),
        (lambda d: d["annotations"][2].update(bbox=[1, 2, "w", 4]), r"annotations\[2\]\.bbox must be 4 numbers"),
        (lambda d: d["annotations"][0].update(image_id=99), r"annotations\[0\]\.image_id 99 is not in 'images'"),
        (lambda d: d["annotations"][0].update(category_id=5), r"annotations\[0\]\.category_id 5 is not in"),
        (lambda d: d["images"][1].pop("width"), r"images\[1\]\.width must be a positive integer"),
        (lambda d: d.pop("categories"), r"'categories' must be a list"),
    ],
)  # fmt: skip
def test_load_coco_errors_name_file_and_field(tmp_path, mutate, message):
    data = _coco_data()
    mutate(data)
    path = _coco_file(tmp_path, data)
    with pytest.raises(AnnotationError, match=r"ann\.json: " + message):
        load_coco(path, str(tmp_path))


# ---------------------------------------------------------------- shapes


def test_shapes_deterministic_and_loadable(tmp_path):
    size = ((64, 112), (48, 96))
    p1 = generate_shapes(str(tmp_path / "a"), 6, size, seed=3, split_name="train")
    p2 = generate_shapes(str(tmp_path / "b"), 6, size, seed=3, split_name="train")
    p3 = generate_shapes(str(tmp_path / "c"), 6, size, seed=4, split_name="train")
    assert open(p1, "rb").read() == open(p2, "rb").read()
    for i in range(6):
        name = os.path.join("train", f"{i:06d}.jpg")
        assert open(tmp_path / "a" / name, "rb").read() == open(tmp_path / "b" / name, "rb").read()
    assert open(p1, "rb").read() != open(p3, "rb").read()
    recs, names = load_coco(p1, str(tmp_path / "a"))
    assert names == list(SHAPES_CLASSES) and len(recs) == 6
    assert len({(r["width"], r["height"]) for r in recs}) > 1  # random, non-square sizes
    for r in recs:
        img = read_image(r["file"])
        assert img.shape == (r["height"], r["width"], 3)
        assert np.all(r["boxes"][:, :2] >= 0) and np.all(r["boxes"][:, 2] <= r["width"])
        assert np.all(r["boxes"][:, 3] <= r["height"])


def test_shapes_styles_bound_the_drawn_shapes():
    easy, hard = shapes_mod.STYLES["easy"], shapes_mod.STYLES["hard"]
    counts = {"easy": [], "hard": []}
    for name, style in (("easy", easy), ("hard", hard)):
        for i in range(60):
            _, boxes, _ = make_shapes_image(np.random.default_rng(i), 256, 256, style)
            counts[name].append(len(boxes))
            if name == "easy" and len(boxes):
                sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
                assert sides.max() <= 0.5 * 256 + 2
    assert max(counts["easy"]) <= easy.max_objects < max(counts["hard"]) <= hard.max_objects
    # the default style is the hard one: same images as before styles existed
    a = make_shapes_image(np.random.default_rng(7), 96, 80)
    b = make_shapes_image(np.random.default_rng(7), 96, 80, hard)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="shapes style 'medium' unknown"):
        shapes_mod.shapes_style("medium")


def test_shapes_cli(tmp_path, capsys):
    assert shapes_mod.main(["--out", str(tmp_path), "--train", "2", "--val", "1", "--size", "64", "48",
                            "--format", "png", "--style", "easy"]) == 0
    assert "train: 2 images" in capsys.readouterr().out
    recs, _ = load_coco(str(tmp_path / "val.json"), str(tmp_path))
    assert len(recs) == 1 and recs[0]["file"].endswith(".png") and (recs[0]["width"], recs[0]["height"]) == (64, 48)
    assert len(load_coco(str(tmp_path / "train.json"), str(tmp_path))[0]) == 2


def test_shapes_boxes_match_drawn_pixels(monkeypatch):
    # black background, no pixel noise or blur, one unique solid colour per shape: then each shape's
    # visible pixels lie inside its box, and the topmost shape fills its box exactly
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255),
                    (0, 255, 255), (255, 255, 255), (128, 255, 0), (0, 128, 255)]  # fmt: skip
    colors = []

    def solid(rng, color, h, w):
        colors.append(palette[len(colors)])
        return np.broadcast_to(np.array(colors[-1], np.uint8), (h, w, 3))

    monkeypatch.setattr(shapes_mod, "_background", lambda rng, w, h, style: np.zeros((h, w, 3), np.uint8))
    monkeypatch.setattr(shapes_mod, "_fill", solid)
    monkeypatch.setattr(shapes_mod, "_finish", lambda rng, img, style: img)
    seen = 0
    for seed in range(30):
        colors.clear()
        rng = np.random.default_rng(seed)
        img, boxes, labels = make_shapes_image(rng, 160, 120)
        for k, (box, color) in enumerate(zip(boxes, colors)):
            ys, xs = np.nonzero(np.all(img == np.array(color, np.uint8), axis=2))
            assert len(xs) >= 12
            pix = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert pix[0] >= box[0] and pix[1] >= box[1] and pix[2] <= box[2] and pix[3] <= box[3]
            if k == len(boxes) - 1:
                np.testing.assert_array_equal(pix, box)
            seen += 1
        assert labels.dtype == np.int64 and np.all(labels < len(SHAPES_CLASSES))
    assert seen > 40


# ---------------------------------------------------------------- torch dataset


@pytest.fixture()
def shapes_records(tmp_path):
    path = generate_shapes(str(tmp_path), 8, ((64, 112), (48, 96)), seed=5, split_name="val")
    recs, _ = load_coco(path, str(tmp_path))
    return recs


def test_dataset_eval_mode_letterbox_and_targets(shapes_records):
    from codenet_pynq.transforms import preprocess

    ds = DetectionDataset(shapes_records, SHAPES_CLASSES, 64, down_ratio=4, max_objs=16, train=False)
    assert not ds.augment and len(ds) == 8
    for idx, rec in enumerate(shapes_records):
        img, t = ds[idx]
        assert img.shape == (3, 64, 64) and img.dtype == torch.float32
        ref, meta = preprocess(read_image(rec["file"]), 64)
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), ref.astype(np.float32))
        assert (t["image_id"], t["width"], t["height"]) == (rec["image_id"], rec["width"], rec["height"])
        assert t["center"] == meta.center and t["scale"] == meta.scale
        assert t["hm"].shape == (5, 16, 16) and t["ind"].dtype == torch.int64
        M = get_affine_transform(meta.center, meta.scale, output_size=(16, 16))
        visible = 0
        for box, label in zip(rec["boxes"], rec["labels"]):
            x1, y1, x2, y2 = (M[0, 0] * box[[0, 1, 2, 3]] + M[[0, 1, 0, 1], 2]).tolist()
            if min(x2 - x1, y2 - y1) < 1:  # under one output pixel: dropped
                continue
            visible += 1
            assert t["hm"][label, int((y1 + y2) / 2), int((x1 + x2) / 2)] == 1.0
        assert int(t["reg_mask"].sum()) == visible


def test_dataset_train_mode_with_dataloader(shapes_records):
    torch.manual_seed(0)
    ds = DetectionDataset(shapes_records, SHAPES_CLASSES, 64, max_objs=16, train=True, keep_empty=False)
    assert len(ds) == sum(len(r["boxes"]) > 0 for r in shapes_records)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True, collate_fn=collate_fn)
    images, targets = next(iter(loader))
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert 0 <= float(images.min()) and float(images.max()) <= 255
    assert targets["hm"].shape == (3, 5, 16, 16) and targets["wh"].shape == (3, 16, 2)
    assert targets["ind"].shape == (3, 16) and targets["reg_mask"].shape == (3, 16)
    assert isinstance(targets["image_id"], list) and len(targets["center"]) == 3
    assert float(targets["hm"].max()) == 1.0
    # the same torch seed gives the same augmented sample
    torch.manual_seed(1)
    a = ds[0][0]
    torch.manual_seed(1)
    assert torch.equal(a, ds[0][0])


def test_dataset_corrupt_image_is_an_error_never_a_substitute(shapes_records):
    from codenet_pynq.training.data.dataset import DatasetError

    with open(shapes_records[2]["file"], "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    for train in (True, False):
        ds = DetectionDataset(shapes_records, SHAPES_CLASSES, 64, max_objs=16, train=train)
        with pytest.raises(DatasetError, match=re.escape(shapes_records[2]["file"]) + ".*replace the image"):
            ds[2]
        assert ds[1][1]["image_id"] == shapes_records[1]["image_id"]


def test_dataset_rejects_bad_records(shapes_records):
    with pytest.raises(AnnotationError, match="out of range"):
        DetectionDataset(shapes_records, SHAPES_CLASSES[:1], 64)
    with pytest.raises(ValueError, match="multiple of down_ratio"):
        DetectionDataset(shapes_records, SHAPES_CLASSES, 66)
