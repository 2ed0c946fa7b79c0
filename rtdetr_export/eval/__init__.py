"""COCO accuracy of the reference model and of every artifact (``rtdetr-export eval``)."""

from rtdetr_export.eval.dataset import CocoDataset, map_categories, read_coco
from rtdetr_export.eval.evaluate import EvalOptions, EvalReport, EvalRow, evaluate
from rtdetr_export.eval.metrics import STAT_NAMES, CocoMetrics, coco_metrics
from rtdetr_export.eval.report import eval_markdown, write_eval_report

__all__ = ["STAT_NAMES", "CocoDataset", "CocoMetrics", "EvalOptions", "EvalReport", "EvalRow", "coco_metrics",
           "evaluate", "map_categories", "read_coco", "eval_markdown", "write_eval_report"]
