"""The client side of a served model (serving/client.py) against a real Triton server: the contract it reads from
the served config, and predictions through the JPEG-in ensemble equal to local predict.

The fast tier's one server: the micro artifacts (tests/micro.py: RT-DETRv2 and D-FINE), Python backend with ONNX
Runtime, one thread. The
tiny-preset server tests (load, bad requests, dying clients, shutdown) are test_triton_server.py's, slow tier.
"""

from __future__ import annotations

import pytest

from rtdetr_export.errors import MissingDependencyError
from rtdetr_export.model import DFineConfig
from rtdetr_export.pipeline import Detector
from rtdetr_export.predict import predict_images
from paths import TESTS

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install -e '.[triton]'")

from rtdetr_export.backends.triton_runner import TritonRunner  # noqa: E402
from rtdetr_export.serving import TritonOptions, write_repository  # noqa: E402
from rtdetr_export.serving.client import open_triton_detector, served_model  # noqa: E402
from rtdetr_export.serving.server import LocalTriton, bundled_server, stub_site  # noqa: E402

pytestmark = pytest.mark.xdist_group("triton_server")  # one server at a time on the two cores

PHOTOS = [TESTS / "data" / "images" / name for name in ("astronaut.jpg", "cat_chelsea.jpg")]


@pytest.fixture(scope="module")
def server(micro_fp32, micro_dfine_fp32, tmp_path_factory):
    try:
        bundled_server()
        stub_site()
    except MissingDependencyError as exc:
        pytest.skip(f"no usable tritonserver: {exc}")
    repository = tmp_path_factory.mktemp("client") / "repo"
    write_repository([micro_fp32, micro_dfine_fp32], repository, TritonOptions(backend="python", ensemble=True, threads=1))
    local = LocalTriton(repository, stop_with_parent=True).start()
    yield local
    local.stop()


def test_the_served_contract_is_the_artifacts_record(server, micro_fp32):
    from rtdetr_export.artifact import open_artifact

    with TritonRunner(server.http_url, "fp32") as runner:
        served = served_model(runner)
    record = open_artifact(micro_fp32)
    assert served.head == "raw" and served.static_batch is None  # dynamic batch: Triton batches requests
    assert served.record.to_json() == record.to_json() | {"op_census": served.record.to_json()["op_census"]}


def test_predictions_through_the_served_ensemble_equal_local_predict(server, micro_fp32, tmp_path):
    local = predict_images(PHOTOS, Detector.from_artifact(micro_fp32), tmp_path / "local", 0.0)
    served = predict_images(PHOTOS, open_triton_detector(f"grpc://{server.grpc_url}", "fp32_ensemble"),
                            tmp_path / "served", 0.0)
    assert served.failures == [] and len(served.predictions["annotations"]) > 0
    assert served.predictions["annotations"] == local.predictions["annotations"]


def test_a_d_fine_served_through_the_ensemble_equals_local_predict(server, micro_dfine_fp32, tmp_path):
    local = predict_images(PHOTOS, Detector.from_artifact(micro_dfine_fp32), tmp_path / "local", 0.0)
    served = predict_images(PHOTOS, open_triton_detector(f"grpc://{server.grpc_url}", "dfine_fp32_ensemble"),
                            tmp_path / "served", 0.0)
    assert served.failures == [] and len(served.predictions["annotations"]) > 0
    assert served.predictions["annotations"] == local.predictions["annotations"]
    with TritonRunner(server.http_url, "dfine_fp32") as runner:
        assert isinstance(served_model(runner).record.model.config, DFineConfig)  # the contract names D-FINE
