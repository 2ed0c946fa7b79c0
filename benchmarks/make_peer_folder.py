#!/usr/bin/env python3
"""Write a transformers RT-DETRv2 folder with seeded, well-conditioned random weights (save_pretrained).

The benchmark scripts export both our ONNX and the peer's (transformers -> torch.onnx -> onnxslim) from this
one folder, so the two graphs compute the same function. Needs transformers.

    python benchmarks/make_peer_folder.py --preset r18vd OUT_FOLDER [--seed 1234]
"""

from __future__ import annotations

import argparse
import sys

from rtdetr_export.bench.peer import random_transformers_model, save_transformers_model
from rtdetr_export.model import preset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--preset", default="r18vd")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    model = random_transformers_model(preset(args.preset), seed=args.seed)
    print(f"wrote {save_transformers_model(model, args.folder)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
