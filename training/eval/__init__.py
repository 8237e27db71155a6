"""Detection evaluation: Pascal VOC protocol AP (``voc``) and COCO via pycocotools (``coco``)."""

from .coco import coco_evaluate, detections_to_coco, records_to_coco
from .results import plot_pr_curves, save_results_json
from .voc import box_iou, voc_ap, voc_class_pr, voc_evaluate, voc_pr_curves

__all__ = [
    "box_iou",
    "coco_evaluate",
    "detections_to_coco",
    "plot_pr_curves",
    "records_to_coco",
    "save_results_json",
    "voc_ap",
    "voc_class_pr",
    "voc_evaluate",
    "voc_pr_curves",
]
