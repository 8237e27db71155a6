"""``codenet-pynq-data``: prepare and check a VOC-format dataset (e.g. a labelImg folder).

``split ROOT`` writes ``ROOT/ImageSets/Main/{train,val,trainval}.txt`` (and ``test.txt``) from the
XML files in ``ROOT/Annotations``: a seeded random split by ratio, reproducible.
``check ROOT`` reads every annotation and image and reports the objects per class, the images
without objects and every problem (bad boxes, unknown classes, missing or unreadable images,
sizes that fit neither the stored nor the EXIF-rotated image); exit status 1 when there is any.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

from codenet_pynq.errors import format_message

from .data.imagefiles import ImageFolder, image_info, oriented_boxes
from .data.records import AnnotationError, atomic_write_bytes
from .data.voc import image_folders, parse_voc_xml, read_image_set, voc_names_in_ids, voc_names_in_sets
from .errors import report_errors

__all__ = ["check_dataset", "main", "write_splits"]

PROG = "codenet-pynq-data"


def annotation_ids(root: str) -> List[str]:
    """Stems of ``ROOT/Annotations/*.xml``, sorted."""
    folder = os.path.join(root, "Annotations")
    if not os.path.isdir(folder):
        raise FileNotFoundError(format_message(root, "no Annotations folder",
                                               "pass the dataset folder that holds Annotations/ (and JPEGImages/)"))
    ids = sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.lower().endswith(".xml"))
    if not ids:
        raise AnnotationError(format_message(folder, "holds no .xml annotation file",
                                             "save the annotations in Pascal VOC format (labelImg: PascalVOC)"))
    return ids


def write_splits(root: str, val: float = 0.2, test: float = 0.0, seed: int = 0, force: bool = False
                 ) -> Dict[str, int]:
    """Write the image set files; returns ``{set name: number of ids}``."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"--val {val} and --test {test} must be fractions in [0, 1) with a sum below 1")
    ids = annotation_ids(root)
    out_dir = os.path.join(root, "ImageSets", "Main")
    names = ["train", "val", "trainval"] + (["test"] if test > 0 else [])
    existing = [n for n in names if os.path.isfile(os.path.join(out_dir, f"{n}.txt"))]
    if existing and not force:
        raise FileExistsError(format_message(os.path.join(out_dir, f"{existing[0]}.txt"), "already exists",
                                             "pass --force to write the splits again"))
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n_test = int(round(test * len(ids)))
    n_val = max(1 if val > 0 else 0, int(round(val * len(ids))))
    if n_val + n_test >= len(ids):
        raise ValueError(f"{root}: {len(ids)} annotations are too few for --val {val} --test {test} "
                         "(the training split would be empty)")
    sets = {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}
    sets["trainval"] = sorted(sets["train"] + sets["val"])
    for name in names:
        atomic_write_bytes(os.path.join(out_dir, f"{name}.txt"), "".join(f"{i}\n" for i in sets[name]).encode())
    return {name: len(sets[name]) for name in names}


def check_dataset(root: str, class_names: Optional[Sequence[str]] = None, image_set: Optional[str] = None,
                  exif_boxes: str = "auto") -> Dict[str, object]:
    """Check every annotation (of ``image_set`` or all) -> report dict (see the module doc)."""
    ids = read_image_set(os.path.join(root, "ImageSets", "Main", f"{image_set}.txt")) if image_set \
        else annotation_ids(root)
    xmls = {i: os.path.join(root, "Annotations", f"{i}.xml") for i in ids}
    if class_names is None:
        class_names = voc_names_in_sets(root, [("", image_set)]) if image_set else voc_names_in_ids(root, ids)
    folder = ImageFolder(image_folders(root))
    per_class: Counter = Counter()
    empty, problems, rotated, unknown = [], [], 0, Counter()
    for image_id, xml in xmls.items():
        counts: Dict[str, int] = {}
        try:
            if not os.path.isfile(xml):
                raise AnnotationError(format_message(xml, "annotation file not found", "add it or drop the id"))
            w, h, boxes, labels, _ = parse_voc_xml(xml, class_names, unknown="skip", counts=counts)
            info = image_info(folder.find(image_id, xml), xml)
            oriented_boxes(boxes, info, (w, h), exif_boxes, xml)
        except AnnotationError as e:
            problems.append(str(e))
            continue
        rotated += info[2] != 1 and info[3]
        for key, n in counts.items():
            unknown[key.split(":", 1)[1]] += n
            problems.append(format_message(xml, f"{n} object(s) named '{key.split(':', 1)[1]}', not a class name",
                                           "fix the name, or add it to the class names"))
        per_class.update(class_names[k] for k in labels.tolist())
        if not len(labels):
            empty.append(image_id)
    return {"images": len(xmls), "class_names": list(class_names),
            "objects_per_class": {n: per_class.get(n, 0) for n in class_names}, "images_without_objects": empty,
            "exif_rotated_images": int(rotated), "unknown_names": dict(unknown), "problems": problems}


def _print_check(report: Dict[str, object], root: str) -> None:
    print(f"{root}: {report['images']} images, classes: {', '.join(report['class_names'])}")
    for name, n in report["objects_per_class"].items():
        print(f"  {name:<20} {n:>7} objects")
    empty = report["images_without_objects"]
    print(f"  images without objects: {len(empty)}" + (f" ({', '.join(empty[:10])}{', ...' if len(empty) > 10 else ''})"
                                                       if empty else ""))
    print(f"  EXIF-rotated photos: {report['exif_rotated_images']}")
    problems = report["problems"]
    print(f"  problems: {len(problems)}")
    for p in problems:
        print(f"    {p}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="write ImageSets/Main/{train,val,trainval}.txt from Annotations/")
    s.add_argument("root", help="dataset folder holding Annotations/")
    s.add_argument("--val", type=float, default=0.2, help="fraction for val (default %(default)s)")
    s.add_argument("--test", type=float, default=0.0, help="fraction for test (default %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the split (default %(default)s)")
    s.add_argument("--force", action="store_true", help="overwrite existing split files")
    c = sub.add_parser("check", help="objects per class, images without objects, bad boxes and images")
    c.add_argument("root", help="dataset folder holding Annotations/ (and JPEGImages/)")
    c.add_argument("--classes", help="comma-separated class names (default: every name found)")
    c.add_argument("--set", dest="image_set", help="check only the ids of ImageSets/Main/SET.txt")
    c.add_argument("--exif-boxes", default="auto", choices=("auto", "stored", "upright"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    def run() -> int:
        if a.command == "split":
            counts = write_splits(a.root, a.val, a.test, a.seed, a.force)
            print(f"wrote {os.path.join(a.root, 'ImageSets', 'Main')}: "
                  + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" ids (seed {a.seed})")
            return 0
        names = [n.strip() for n in a.classes.split(",") if n.strip()] if a.classes else None
        report = check_dataset(a.root, names, a.image_set, a.exif_boxes)
        _print_check(report, a.root)
        return 1 if report["problems"] else 0

    return report_errors(PROG, a.debug, run)


if __name__ == "__main__":
    sys.exit(main())
