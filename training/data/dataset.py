"""PyTorch dataset: records -> (raw BGR input tensor, CenterNet targets + eval meta)."""

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from codenet_pynq.errors import CodenetError, format_message
from codenet_pynq.image_io import ImageReadError, read_image

from .records import Record, validate_records
from .targets import build_targets
from .transforms import AugmentConfig, prepare_sample

log = logging.getLogger(__name__)

TARGET_KEYS = ("hm", "wh", "reg", "ind", "reg_mask")
META_KEYS = ("image_id", "center", "scale", "width", "height", "file")


class DatasetError(CodenetError, ValueError):
    """An image of the dataset cannot be used; the message names the file and what to do."""


class DetectionDataset(Dataset):
    """CenterNet samples from annotation records.

    ``__getitem__`` returns ``(image, target)``: ``image`` float32 (3, S, S) raw BGR 0..255
    (no normalisation; zero letterbox border), ``target`` the tensors of
    :func:`~.targets.build_targets` plus meta for evaluation: ``image_id``, ``center``,
    ``scale``, ``width``, ``height`` (original image) and ``file``.

    ``augment`` (default: ``train``) applies the random centre affine, flip and colour noise;
    otherwise the image is letterboxed with centre (w/2, h/2) and scale max(h, w). An unreadable
    image, or one whose size is not the record's, is a :class:`DatasetError` naming the file
    (never replaced by another image).
    """

    def __init__(
        self,
        records: Sequence[Record],
        class_names: Sequence[str],
        input_size: int,
        down_ratio: int = 4,
        max_objs: int = 128,
        train: bool = True,
        augment: Optional[bool] = None,
        keep_empty: bool = True,
        augment_config: Optional[AugmentConfig] = None,
    ) -> None:
        if input_size <= 0 or input_size % down_ratio:
            raise ValueError(f"input_size {input_size} must be a positive multiple of down_ratio {down_ratio}")
        validate_records(records, num_classes=len(class_names))
        self.records: List[Record] = [r for r in records if keep_empty or len(r["boxes"])]
        if not self.records:
            raise ValueError("DetectionDataset: no records (all empty and keep_empty=False?)")
        self.class_names = list(class_names)
        self.input_size = int(input_size)
        self.down_ratio = int(down_ratio)
        self.max_objs = int(max_objs)
        self.train = bool(train)
        self.augment = self.train if augment is None else bool(augment)
        self.augment_config = augment_config or AugmentConfig()

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, idx: int) -> np.ndarray:
        """The decoded image of record ``idx``; never another image in its place."""
        rec = self.records[idx]
        try:
            image = read_image(rec["file"])
        except ImageReadError as e:
            raise DatasetError(f"{e} (Training data, image id {rec['image_id']}: replace the image or remove it "
                               "from the image set.)") from None
        h, w = image.shape[:2]
        if (w, h) != (rec["width"], rec["height"]):
            raise DatasetError(format_message(
                rec["file"], f"the image is {w} x {h} but its annotation says {rec['width']} x {rec['height']}",
                "the file changed after it was annotated: annotate it again"))
        return image

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, Dict[str, Any]]:
        idx = int(idx)
        image = self._image(idx)
        rec = self.records[idx]
        boxes = rec["boxes"]
        h, w = image.shape[:2]
        rng = np.random.default_rng(int(torch.randint(2**62, ()).item())) if self.augment else None
        s = prepare_sample(image, boxes, self.input_size, self.down_ratio, rng, self.augment_config)
        out = self.input_size // self.down_ratio
        t = build_targets(s["boxes_out"], rec["labels"][s["keep"]], len(self.class_names), (out, out), self.max_objs)
        target: Dict[str, Any] = {k: torch.from_numpy(t[k]) for k in TARGET_KEYS}
        target.update(
            image_id=int(rec["image_id"]),
            center=(float(s["center"][0]), float(s["center"][1])),
            scale=float(s["scale"]),
            width=int(w),
            height=int(h),
            file=rec["file"],
        )
        img = torch.from_numpy(np.ascontiguousarray(s["image"].transpose(2, 0, 1)))
        return img, target


def collate_fn(batch: Sequence[Tuple[torch.Tensor, Dict[str, Any]]]) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Stack images and target tensors; keep the other (meta) entries as lists."""
    images = torch.stack([b[0] for b in batch])
    targets: Dict[str, Any] = {}
    for key in batch[0][1]:
        values = [b[1][key] for b in batch]
        targets[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return images, targets
