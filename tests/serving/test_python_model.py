"""The Python-backend model (serving/python_model.py) in this process: each role answers a request as the local code
does, and a bad request gets its own error while the others in the batch are answered.

Triton gives the model its `triton_python_backend_utils` module only inside the server's stub process; here a
stand-in with the handful of names the model uses (PythonBackendUtils below) takes its place, and the config is the
generated config.pbtxt as JSON, the form Triton hands to `initialize`. The real server runs the same file in the
slow tier (test_triton_server.py, test_triton_split.py); this is the fast tier's check of its logic.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.imaging import load_image, postprocess, preprocess
from rtdetr_export.pipeline import Detector
from paths import TESTS

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install -e '.[triton]'")

from google.protobuf import json_format  # noqa: E402  (tritonclient brings it)

from rtdetr_export.serving import TritonOptions, parse_config, write_repository  # noqa: E402

PHOTO = TESTS / "data" / "images" / "cat_chelsea.jpg"
SOURCE = Path(__file__).resolve().parents[2] / "rtdetr_export" / "serving" / "python_model.py"
NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT64": np.int64, "TYPE_INT32": np.int32,
               "TYPE_UINT8": np.uint8, "TYPE_STRING": np.object_, "TYPE_BOOL": np.bool_}


class PythonBackendUtils(types.ModuleType):
    """The names of Triton's `triton_python_backend_utils` that python_model.py uses, with their documented
    behaviour: tensors by name, responses holding output tensors or an error."""

    class Tensor:
        def __init__(self, name: str, array: np.ndarray):
            self._name, self._array = name, array

        def name(self) -> str:
            return self._name

        def as_numpy(self) -> np.ndarray:
            return self._array

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.output_tensors, self.error = list(output_tensors), error

        def outputs(self) -> dict[str, np.ndarray]:
            return {t.name(): t.as_numpy() for t in self.output_tensors}

    class TritonError:
        def __init__(self, message: str):
            self.message = message

    class TritonModelException(Exception):
        pass

    def __init__(self):
        super().__init__("triton_python_backend_utils")

    @staticmethod
    def triton_string_to_numpy(name: str):
        return NUMPY_TYPES[name]

    @staticmethod
    def get_input_tensor_by_name(request: dict, name: str):
        return request.get(name)


def _request(**arrays: np.ndarray) -> dict:
    return {name: PythonBackendUtils.Tensor(name, array) for name, array in arrays.items()}


@pytest.fixture
def served_from(tmp_path, monkeypatch):
    """``served_from(artifact)(name)``: the initialized Python-backend model NAME of a repository written for
    ``artifact`` (python backend, ONNX Runtime, JPEG-in ensemble)."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", PythonBackendUtils())
    loaded = []

    def repository_of(artifact: Path):
        repository = tmp_path / f"repo_{artifact.stem}"
        write_repository([artifact], repository, TritonOptions(backend="python", ensemble=True, threads=1))

        def load(name: str):
            folder = repository / name
            config = parse_config((folder / "config.pbtxt").read_text())
            # The repository's model.py is the package's file, byte for byte; run the package's (coverage sees it).
            assert (folder / "1" / "model.py").read_bytes() == SOURCE.read_bytes()
            spec = importlib.util.spec_from_file_location(f"served_{name}", SOURCE)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            model = module.TritonPythonModel()
            model.initialize({"model_config": json_format.MessageToJson(config, preserving_proto_field_name=True),
                              "model_repository": str(folder), "model_version": "1"})
            loaded.append(model)
            return model

        return load

    yield repository_of
    for model in loaded:
        model.finalize()


@pytest.fixture
def served(served_from, micro_fp32):
    """``served(name)``: the model NAME of the micro artifact's repository."""
    return served_from(micro_fp32)


def test_the_model_role_batches_requests_and_answers_each_with_its_own_rows(served, micro_fp32):
    model = served("fp32")
    rng = np.random.default_rng(0)
    first, second = (rng.random((n, 3, 128, 128), dtype=np.float32) for n in (1, 2))
    responses = model.execute([_request(images=first), _request(images=second)])
    with OnnxRuntimeRunner(micro_fp32, threads=1) as runner:
        expected = runner.infer({"images": np.concatenate([first, second])})
    assert [r.error for r in responses] == [None, None]
    for response, rows in zip(responses, (slice(0, 1), slice(1, 3))):
        outputs = response.outputs()
        assert set(outputs) == {"logits", "pred_boxes"}
        for name, value in outputs.items():
            np.testing.assert_array_equal(value, expected[name][rows])


def test_preprocess_reads_jpeg_bytes_as_predict_does_and_fails_only_the_bad_request(served):
    model = served("fp32_preprocess")
    good = np.array([PHOTO.read_bytes()], dtype=np.object_)
    bad = np.array([b"not an image"], dtype=np.object_)
    responses = model.execute([_request(image=good), _request(image=bad)])
    assert responses[0].error is None and "image 0" in responses[1].error.message
    picture = load_image(PHOTO)
    outputs = responses[0].outputs()
    np.testing.assert_array_equal(outputs["images"], preprocess(picture, (128, 128)))
    np.testing.assert_array_equal(outputs["orig_target_sizes"], [[picture.width, picture.height]])


def test_postprocess_is_the_detections_head_of_predict_over_every_query(served):
    model = served("fp32_postprocess")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 30, 4)).astype(np.float32)
    boxes = rng.uniform(0.1, 0.6, (1, 30, 4)).astype(np.float32)
    sizes = np.array([[640, 480]], dtype=np.int64)  # (width, height)
    [response] = model.execute([_request(logits=logits, pred_boxes=boxes, orig_target_sizes=sizes)])
    [expected] = postprocess(logits, boxes, [(480, 640)], threshold=-1.0, top_k=30)
    outputs = response.outputs()
    np.testing.assert_array_equal(outputs["labels"][0], expected.labels)
    np.testing.assert_allclose(outputs["boxes"][0], expected.boxes, rtol=0, atol=1e-4)
    np.testing.assert_allclose(outputs["scores"][0], expected.scores, rtol=0, atol=1e-7)


def test_a_d_fine_ensemble_chain_gives_local_predicts_detections(served_from, micro_dfine_fp32):
    """D-FINE's raw head has RT-DETRv2's contract, so the same three roles serve it: JPEG bytes -> preprocess ->
    the model -> postprocess gives what a local Detector on the file finds in the same photo."""
    load = served_from(micro_dfine_fp32)
    stages = [load(f"dfine_fp32{suffix}") for suffix in ("_preprocess", "", "_postprocess")]
    [pre] = stages[0].execute([_request(image=np.array([PHOTO.read_bytes()], dtype=np.object_))])
    [raw] = stages[1].execute([_request(images=pre.outputs()["images"])])
    [post] = stages[2].execute([_request(**raw.outputs(), orig_target_sizes=pre.outputs()["orig_target_sizes"])])
    assert [r.error for r in (pre, raw, post)] == [None, None, None]
    with Detector.from_artifact(micro_dfine_fp32) as detector:
        [expected] = detector.detect_batch([load_image(PHOTO)], threshold=-1.0)
    served_out = post.outputs()
    assert len(expected.scores) == 30  # every query, as the detections head answers
    np.testing.assert_array_equal(served_out["labels"][0], expected.labels)
    np.testing.assert_array_equal(served_out["scores"][0], expected.scores)
    np.testing.assert_array_equal(served_out["boxes"][0], expected.boxes)
