"""COCO accuracy of the reference model and of every artifact (``rtdetr-export eval``)."""

from rtdetr_export.eval.dataset import CocoDataset, map_categories, read_coco
from rtdetr_export.eval.evaluate import (EvalOptions, EvalReport, EvalRow, EvalSet, detector_metrics, evaluate,
                                        prepare_eval_set)
from rtdetr_export.eval.metrics import STAT_NAMES, CocoMetrics, coco_metrics
from rtdetr_export.eval.report import eval_markdown, write_eval_report

__all__ = ["STAT_NAMES", "CocoDataset", "CocoMetrics", "EvalOptions", "EvalReport", "EvalRow", "EvalSet",
           "coco_metrics", "detector_metrics", "evaluate", "eval_markdown", "map_categories", "prepare_eval_set",
           "read_coco", "write_eval_report"]
