"""Latency benchmarks: timing loops, statistics, machine info and report writers (json/md/csv/png)."""

from rtdetr_export.bench.options import BenchOptions, parse_batches
from rtdetr_export.bench.suite import run_benchmark
from rtdetr_export.bench.targets import BACKENDS, DEFAULT_BACKENDS, parse_backends
from rtdetr_export.bench.writers import write_report

__all__ = ["BACKENDS", "DEFAULT_BACKENDS", "BenchOptions", "parse_backends", "parse_batches", "run_benchmark",
           "write_report"]
