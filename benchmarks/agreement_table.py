#!/usr/bin/env python3
"""The agreement table of a fixture accuracy run: one row per ``agreement_NAME.json`` (``verify --json`` on the val
images) in the folder given, with the worst value over the verified batches of each check (benchmarks/
accuracy_lib.sh ``agreement_table``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def value(check: dict) -> float:
    return check[check["metric"]]


def main(folder: Path) -> None:
    print("| run | candidate | precision | limits | passed | matched | labels | mean IoU | mean score diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted(folder.glob("agreement_*.json")):
        name, verdict = path.stem[len("agreement_"):], json.loads(path.read_text())
        if "error" in verdict:
            print(f"| {name} | - | - | - | {verdict['error']} | | | | |")
            continue
        runs = verdict["runs"]
        worst = {k: min(value(r["outputs"][k]) for r in runs) for k in ("matched", "labels", "boxes")}
        score = max(value(r["outputs"]["scores"]) for r in runs)
        limits = "bf16" if "bf16" in verdict["candidate"] else verdict["precision"]  # the limits it was judged by
        print(f"| {name} | {verdict['candidate']} | {verdict['precision']} | {limits} | {verdict['passed']} | "
              f"{worst['matched']:.3f} | {worst['labels']:.3f} | {worst['boxes']:.3f} | {score:.4f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
