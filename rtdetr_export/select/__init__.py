"""``rtdetr-export select``: the fastest CPU artifact for this machine within an AP budget.

Every candidate (an artifact and the runtime that runs it, candidates.py) is made, timed in one interleaved run
(bench's loop) and scored on a COCO set (eval's code); the choice (pareto.py) is written with a record of why
(run.py; report.py, plot.py and writers.py the report)."""

from rtdetr_export.select.candidates import (CPU_CANDIDATES, ArtifactRecipe, BuildContext, Candidate, Runtime,
                                             copy_recipe, export_recipe, openvino_int8_recipe)
from rtdetr_export.select.pareto import Choice, Point, choose, pareto_front, within_budget
from rtdetr_export.select.report import SelectReport, SelectRow, select_markdown
from rtdetr_export.select.run import SelectOptions, measure_latency, select_artifact
from rtdetr_export.select.writers import write_select_report

__all__ = ["CPU_CANDIDATES", "ArtifactRecipe", "BuildContext", "Candidate", "Choice", "Point", "Runtime",
           "SelectOptions", "SelectReport", "SelectRow", "choose", "copy_recipe", "export_recipe",
           "measure_latency", "openvino_int8_recipe", "pareto_front", "select_artifact", "select_markdown",
           "within_budget", "write_select_report"]
