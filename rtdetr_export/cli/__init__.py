"""The ``rtdetr-export`` command line: a thin layer over the Python API."""

from rtdetr_export.cli.main import main

__all__ = ["main"]
