"""Serving with NVIDIA Triton Inference Server: model repositories from our artifacts (``repository``), a client
that gives the same Detections as local predict (``client``), a load test (``load``) and a local server for tests
and measurements (``server``). docs/serving.md describes the layout and the commands."""

from rtdetr_export.serving.config import TritonOptions, parse_config
from rtdetr_export.serving.repository import RepositoryResult, write_repository

__all__ = ["RepositoryResult", "TritonOptions", "parse_config", "write_repository"]
