"""A generated repository on a real Triton Inference Server (the nvidia-pytriton wheel's tritonserver, Python
backend with ONNX Runtime inside): it answers as the local runner does, batches under load, and survives bad
requests, dying clients and its own shutdown.

One tiny-preset export and one server per session; the load test here is a few seconds (the 30 s, 16-client
measurement is benchmarks/run_triton.sh).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.errors import MissingDependencyError
from rtdetr_export.imaging import load_image, preprocess
from rtdetr_export.pipeline import Detector, OnnxExportOptions, export_onnx
from rtdetr_export.precision import PrecisionOptions
from rtdetr_export.predict import predict_images

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install -e '.[triton]'")

from rtdetr_export.backends.triton_runner import TritonRunner  # noqa: E402
from rtdetr_export.serving import TritonOptions, write_repository  # noqa: E402
from rtdetr_export.serving.client import open_triton_detector  # noqa: E402
from rtdetr_export.serving.load import run_load  # noqa: E402
from rtdetr_export.serving.server import LocalTriton, bundled_server, stub_site  # noqa: E402
from paths import TESTS
from tiers import costly

# One worker runs this module (README: --dist loadgroup): its tests share one export and one running Triton server
# (artifact, server).
pytestmark = pytest.mark.xdist_group("triton_server")

PHOTOS = TESTS / "data" / "images"
PHOTO_NAMES = ["astronaut.jpg", "cat_chelsea.jpg", "coffee_cup.jpg"]
THRESHOLD = 0.3


@pytest.fixture(scope="session")
@costly
def artifact(tmp_path_factory):
    from rtdetr_export.weights import load_model

    path = tmp_path_factory.mktemp("triton_artifact") / "tiny.onnx"
    export_onnx(load_model(preset="tiny", method="discrete"), path, OnnxExportOptions(dynamic_batch=True, verify=False))
    return path


@pytest.fixture(scope="session")
@costly
def fp16_artifact(tmp_path_factory):
    """What ``rtdetr-export onnx --preset tiny --precision fp16 --dynamic-batch`` writes: casts at the graph's
    inputs and outputs, which OpenVINO folds (its output ports then also carry the inner tensors' names)."""
    from rtdetr_export.weights import load_model

    path = tmp_path_factory.mktemp("triton_fp16") / "tiny_fp16.onnx"
    export_onnx(load_model(preset="tiny", method="discrete"), path, OnnxExportOptions(
        dynamic_batch=True, verify=False, precision=PrecisionOptions("fp16", calib_count=4)))
    return path


def _start(repository: Path) -> LocalTriton:
    try:
        bundled_server()
        stub_site()
    except MissingDependencyError as exc:
        pytest.skip(f"no usable tritonserver: {exc}")
    # A test run that is killed (a timeout, Ctrl-C twice) must not leave its server running: seen on a shared machine.
    return LocalTriton(repository, stop_with_parent=True).start()


@pytest.fixture(scope="session")
@costly
def server(artifact, tmp_path_factory):
    repository = tmp_path_factory.mktemp("triton") / "repo"
    write_repository([artifact], repository, TritonOptions(backend="python", ensemble=True, threads=1,
                                                           max_queue_delay_us=2000))
    local = _start(repository)
    yield local
    local.stop()


@pytest.fixture(scope="session")
def local_runner(artifact):
    with OnnxRuntimeRunner(artifact, threads=1) as runner:
        yield runner


def _photo_batch() -> np.ndarray:
    return preprocess(load_image(PHOTOS / PHOTO_NAMES[1]), (320, 320))


def test_server_is_live_and_every_generated_model_is_ready(server):
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url)
    assert client.is_server_live() and client.is_server_ready()
    for name in ("tiny", "tiny_preprocess", "tiny_postprocess", "tiny_ensemble"):
        assert client.is_model_ready(name), name


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_raw_head_over_the_wire_equals_the_local_runner(server, local_runner, protocol):
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    feed = {"images": _photo_batch()}
    with TritonRunner(url, "tiny") as remote:
        served = remote.infer(feed)
    local = local_runner.infer(feed)
    for name in ("logits", "pred_boxes"):
        assert served[name].shape == local[name].shape
        assert float(np.abs(served[name] - local[name]).max()) <= 1e-5


@pytest.mark.parametrize("model, protocol", [("tiny", "grpc"), ("tiny_ensemble", "http"),
                                             ("tiny_ensemble", "grpc")])
def test_served_predictions_equal_local_predict(server, artifact, tmp_path, model, protocol):
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    photos = [PHOTOS / name for name in PHOTO_NAMES]
    local = predict_images(photos, Detector.from_artifact(artifact), tmp_path / "local", THRESHOLD)
    served = predict_images(photos, open_triton_detector(url, model), tmp_path / "served", THRESHOLD)
    assert served.failures == [] and len(served.predictions["annotations"]) > 0
    assert served.predictions["annotations"] == local.predictions["annotations"]
    assert served.predictions["images"] == local.predictions["images"]


def _expect_error(runner: TritonRunner, feed: dict) -> str:
    with pytest.raises(Exception) as caught:
        runner.infer(feed)
    return str(caught.value)


def test_malformed_requests_get_errors_and_the_next_request_is_served(server, local_runner):
    good = {"images": _photo_batch()}
    with TritonRunner(f"grpc://{server.grpc_url}", "tiny") as model, \
            TritonRunner(server.http_url, "tiny_ensemble") as ensemble:
        assert "shape" in _expect_error(model, {"images": good["images"][:, :, :100]})
        assert "data-type" in _expect_error(model, {"images": good["images"].astype(np.float64)}).replace(" ", "-")
        assert "not a decodable image" in _expect_error(ensemble, {"image": np.array([[b"\xff\xd8 junk"]],
                                                                                       dtype=np.object_)})
        assert float(np.abs(model.infer(good)["logits"] - local_runner.infer(good)["logits"]).max()) <= 1e-5
        encoded = (PHOTOS / PHOTO_NAMES[0]).read_bytes()
        assert ensemble.infer({"image": np.array([[encoded]], dtype=np.object_)})["scores"].shape == (1, 50)


def test_a_client_killed_mid_request_does_not_stop_the_server(server):
    script = ("import numpy as np, tritonclient.grpc as g\n"
              f"c = g.InferenceServerClient('{server.grpc_url}')\n"
              "x = g.InferInput('images', [8, 3, 320, 320], 'FP32')\n"
              "x.set_data_from_numpy(np.random.rand(8, 3, 320, 320).astype(np.float32))\n"
              "print('sending', flush=True)\n"
              "while True: c.infer('tiny', [x])\n")
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "sending"
    time.sleep(0.5)  # mid-request: a batch of 8 takes longer than this on 2 cores
    client.kill()
    client.wait()
    with TritonRunner(server.http_url, "tiny") as runner:
        assert runner.infer({"images": _photo_batch()})["logits"].shape == (1, 50, 80)


def test_concurrent_clients_are_batched_without_failures(server):
    pictures = [load_image(PHOTOS / name) for name in PHOTO_NAMES]
    result = run_load(f"grpc://{server.grpc_url}", "tiny", pictures, clients=16, seconds=3.0)
    assert result.failed == 0 and result.aborted is None and result.requests > 0
    assert result.dynamic_batching is True
    assert max(result.batch_sizes) > 1, result.batch_sizes
    assert sum(size * count for size, count in result.batch_sizes.items()) >= result.requests


def test_stopping_the_server_ends_running_clients_with_a_clear_error(artifact, tmp_path):
    repository = tmp_path / "repo"
    write_repository([artifact], repository, TritonOptions(backend="python", threads=1))
    local = _start(repository)
    pictures = [load_image(PHOTOS / PHOTO_NAMES[0])]
    outcome = {}
    load = threading.Thread(target=lambda: outcome.update(result=run_load(
        local.http_url, "tiny", pictures, clients=4, seconds=60.0, timeout_s=10.0)))
    load.start()
    time.sleep(1.5)
    stopped = time.monotonic()
    local.stop()
    load.join(30.0)
    assert not load.is_alive(), "clients hung after the server stopped"
    result = outcome["result"]
    assert result.aborted is not None and "stopped answering" in result.aborted
    assert time.monotonic() - stopped < 30.0


def test_openvino_in_the_python_backend_returns_an_fp16_files_outputs_under_their_onnx_names(fp16_artifact, tmp_path):
    from rtdetr_export.backends.openvino_runner import OpenVinoRunner

    pytest.importorskip("openvino")
    repository = tmp_path / "repo"
    write_repository([fp16_artifact], repository, TritonOptions(backend="python", python_runtime="openvino",
                                                                threads=1))
    feed = {"images": _photo_batch()}
    with OpenVinoRunner(fp16_artifact, "f32", threads=1) as runner:
        local = runner.infer(feed)
    server = _start(repository)
    try:
        with TritonRunner(server.http_url, "tiny_fp16") as remote:
            served = remote.infer(feed)
    finally:
        server.stop()
    assert sorted(served) == sorted(local) == ["logits", "pred_boxes"]
    for name in ("logits", "pred_boxes"):
        assert served[name].shape == local[name].shape
        # The same runner, file, threads and input in both processes: the same numbers.
        np.testing.assert_array_equal(served[name], local[name])


def test_the_ensemble_reads_a_turned_jpeg_upright(server, tmp_path):
    """A phone photo stored turned (Exif orientation 6 or 8) is detected by the served ensemble in its upright
    picture, exactly as the same pixels turned upright and sent losslessly are."""
    import io

    from PIL import Image, ImageOps

    upright = load_image(PHOTOS / PHOTO_NAMES[0]).crop((0, 0, 480, 320))  # non-square: a turn changes the size
    with TritonRunner(server.http_url, "tiny_ensemble") as ensemble:
        def detect(encoded: bytes) -> dict:
            return ensemble.infer({"image": np.array([[encoded]], dtype=np.object_)})

        def png(image: Image.Image) -> bytes:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()

        for orientation, turn in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
            exif = Image.Exif()
            exif[0x0112] = orientation
            buffer = io.BytesIO()
            upright.transpose(turn).save(buffer, format="JPEG", quality=95, exif=exif)
            stored = Image.open(io.BytesIO(buffer.getvalue()))
            as_viewers_show_it = ImageOps.exif_transpose(stored).convert("RGB")
            assert as_viewers_show_it.size == upright.size
            served = detect(buffer.getvalue())
            expected = detect(png(as_viewers_show_it))
            as_stored = detect(png(stored.convert("RGB")))
            for name in ("labels", "boxes", "scores"):
                assert np.array_equal(served[name], expected[name]), (orientation, name)
            # Read as stored, the picture is another one: its boxes are in the turned frame.
            assert not np.array_equal(served["boxes"], as_stored["boxes"])
