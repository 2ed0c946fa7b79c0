"""benchmarks/triton_loadgen.py, the independent load test: it reads hey's summary into the right numbers and its
KServe JSON body carries the pre-processed image exactly (every float32 reads back to itself)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
from paths import ROOT

SCRIPT = ROOT / "benchmarks" / "triton_loadgen.py"


def _loadgen():
    spec = importlib.util.spec_from_file_location("triton_loadgen", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# hey 0.1.4's summary after SIGINT: 12 answers (one a 400) and 2 requests that never got one.
HEY_SUMMARY = """
Summary:
  Total:\t20.4312 secs
  Slowest:\t9.1200 secs
  Fastest:\t0.6100 secs
  Average:\t4.2000 secs
  Requests/sec:\t0.5873

Latency distribution:
  10% in 0.9000 secs
  25% in 2.0000 secs
  50% in 4.1000 secs
  75% in 6.0000 secs
  90% in 8.5000 secs
  0% in 0.0000 secs
  0% in 0.0000 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0001 secs, 0.0000 secs, 0.0003 secs

Status code distribution:
  [200]\t11 responses
  [400]\t1 responses

Error distribution:
  [2]\tPost "http://127.0.0.1:8000/v2/models/m/infer": context deadline exceeded
"""


def test_hey_summary_becomes_rate_percentiles_statuses_and_errors():
    parsed = _loadgen().parse_hey(HEY_SUMMARY)
    assert parsed["requests_per_s"] == 0.5873 and parsed["total_s"] == 20.4312
    assert parsed["latency_ms"] == {"fastest": 610.0, "mean": 4200.0, "slowest": 9120.0, "p10": 900.0,
                                    "p25": 2000.0, "p50": 4100.0, "p75": 6000.0, "p90": 8500.0}
    assert parsed["status_codes"] == {200: 11, 400: 1}
    assert parsed["errors"] == {'Post "http://127.0.0.1:8000/v2/models/m/infer": context deadline exceeded': 2}


def test_json_body_carries_the_preprocessed_image_exactly():
    from rtdetr_export.imaging import load_image, preprocess

    loadgen = _loadgen()
    served = {"inputs": [{"name": "images", "data_type": "TYPE_FP32"},
                         {"name": "orig_target_sizes", "data_type": "TYPE_INT64"}],
              "outputs": ["labels", "boxes", "scores"], "input_size": [24, 40]}
    body = json.loads(loadgen.request_body(served))
    picture = load_image(loadgen.IMAGE)
    images, sizes = body["inputs"]
    assert images["name"] == "images" and images["datatype"] == "FP32" and images["shape"] == [1, 3, 24, 40]
    expected = preprocess(picture, (24, 40))
    np.testing.assert_array_equal(np.array(images["data"], np.float32).reshape(expected.shape), expected)
    assert sizes == {"name": "orig_target_sizes", "shape": [1, 2], "datatype": "INT64",
                     "data": [picture.width, picture.height]}
    assert body["outputs"] == [{"name": "labels"}, {"name": "boxes"}, {"name": "scores"}]
