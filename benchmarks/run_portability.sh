#!/usr/bin/env bash
# Re-measure edge portability: docs/portability.md ("Measured"), benchmarks/results/portability/ and the
# package's rtdetr_export/export/portability_measured.json. Run from anywhere, in the project's environment
# (pip install -e '.[test]'); extra arguments go to benchmarks/portability.py (e.g. --runs 20 --note "quiet").
#
# Runtimes and converters go into two virtual environments under build/portability/ (git-ignored, like the
# converted models there), never into the project's environment:
# - venv: sees the project's packages (torch, onnxruntime, rtdetr_export) and adds openvino, pnnx and ncnn;
# - venv-tf: onnx2tf pins exact numpy/onnx/onnxruntime/tensorflow versions, so it gets an environment of its
#   own; its worker needs nothing from the project.
# - venv-rknn: rknn-toolkit2 2.5.0 pins torch<=2.4 and old numpy/onnx; it runs with the versions below (its
#   wheel without dependencies, then these), and imports pkg_resources at start (setuptools<70, after torch,
#   which pulls a newer one).
# About 10 minutes on 2 cores, most of it the two TensorFlow Lite conversions; about 3.5 GB of disk.
# --preset dfine_n (any preset but r18vd) measures that model and writes benchmarks/results/portability/dfine_n/
# only (docs/portability.md "D-FINE-N").
# --fixture measures the trained fixture's rows instead (single file and split artifact, fp32 and INT8, on ncnn,
# RKNN's simulator and LiteRT; benchmarks/portability_fixture.py): about 35 minutes, and 2 GB more for RKNN.
# --fixture --fixture-model dfine measures the trained D-FINE fixture (tests/data/fixture/dfine_shapes) the same way
# and writes benchmarks/results/portability/dfine_fixture/ and its section of docs/portability.md only.
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${PORTABILITY_WORK:-build/portability}
PYTHON=${PYTHON:-python3}

OPENVINO=openvino==2026.4.1
PNNX=pnnx==20261020
NCNN=ncnn==1.0.20261020
ONNX2TF=onnx2tf==1.29.24  # pins tensorflow 2.19.0, tf-keras 2.19.0, ai-edge-litert 2.1.0, onnx 1.19.1
RKNN=rknn-toolkit2==2.5.0

mkdir -p "$WORK"
[ -x "$WORK/venv/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$OPENVINO" "$PNNX" "$NCNN"
[ -x "$WORK/venv-tf/bin/python" ] || "$PYTHON" -m venv "$WORK/venv-tf"
# pillow: the fixture's worker runs the project's host step (rtdetr_export.imaging imports it).
"$WORK/venv-tf/bin/python" -m pip install -q "$ONNX2TF" pillow
if [[ " $* " == *" --fixture "* ]]; then
  R="$WORK/venv-rknn/bin/python"
  [ -x "$R" ] || "$PYTHON" -m venv "$WORK/venv-rknn"
  "$R" -m pip install -q --no-deps "$RKNN"
  "$R" -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  "$R" -m pip install -q numpy==1.26.4 onnx==1.18.0 protobuf==4.25.4 onnxruntime psutil ruamel.yaml scipy tqdm \
      opencv-python-headless fast-histogram pillow 'setuptools<70'
fi

exec "$WORK/venv/bin/python" benchmarks/portability.py --work "$WORK" \
    --python "litert=$WORK/venv-tf/bin/python" --python "rknn=$WORK/venv-rknn/bin/python" "$@"
