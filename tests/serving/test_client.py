"""The client side of a served model (serving/client.py) against a real Triton server: the contract it reads from
the served config, and predictions through the JPEG-in ensemble equal to local predict.

The fast tier's one server: the micro artifact (tests/micro.py), Python backend with ONNX Runtime, one thread; the
micro D-FINE's server is the slow tier's (its Python-backend chain is tested in process, fast:
test_python_model.py). The tiny-preset server tests (load, bad requests, dying clients, shutdown) are
test_triton_server.py's, slow tier.
"""

from __future__ import annotations

import pytest

from rtdetr_export.errors import MissingDependencyError
from rtdetr_export.model import DFineConfig
from rtdetr_export.pipeline import Detector
from rtdetr_export.predict import predict_images
from paths import TESTS
from tiers import costly

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install -e '.[triton]'")

from rtdetr_export.backends.triton_runner import TritonRunner  # noqa: E402
from rtdetr_export.serving import TritonOptions, write_repository  # noqa: E402
from rtdetr_export.serving.client import open_triton_detector, served_model  # noqa: E402
from rtdetr_export.serving.server import LocalTriton, bundled_server, stub_site  # noqa: E402

pytestmark = pytest.mark.xdist_group("triton_server")  # one server at a time on the two cores

PHOTOS = [TESTS / "data" / "images" / name for name in ("astronaut.jpg", "cat_chelsea.jpg")]


def _serve(artifacts, folder):
    try:
        bundled_server()
        stub_site()
    except MissingDependencyError as exc:
        pytest.skip(f"no usable tritonserver: {exc}")
    repository = folder / "repo"
    write_repository(artifacts, repository, TritonOptions(backend="python", ensemble=True, threads=1))
    return LocalTriton(repository, stop_with_parent=True).start()


@pytest.fixture(scope="module")
def server(micro_fp32, tmp_path_factory):
    local = _serve([micro_fp32], tmp_path_factory.mktemp("client"))
    yield local
    local.stop()


@pytest.fixture(scope="module")
@costly  # a second server (every ensemble step of a model is a Python-backend process: ~2.5 s to start and stop)
def dfine_server(micro_dfine_fp32, tmp_path_factory):
    local = _serve([micro_dfine_fp32], tmp_path_factory.mktemp("client_dfine"))
    yield local
    local.stop()


def test_the_served_contract_is_the_artifacts_record(server, micro_fp32):
    from rtdetr_export.artifact import open_artifact

    with TritonRunner(server.http_url, "fp32") as runner:
        served = served_model(runner)
    record = open_artifact(micro_fp32)
    assert served.head == "raw" and served.static_batch is None  # dynamic batch: Triton batches requests
    assert served.record.to_json() == record.to_json() | {"op_census": served.record.to_json()["op_census"]}


def _assert_served_ensemble_equals_local_predict(server, artifact, tmp_path) -> None:
    local = predict_images(PHOTOS, Detector.from_artifact(artifact), tmp_path / "local", 0.0)
    served = predict_images(PHOTOS, open_triton_detector(f"grpc://{server.grpc_url}", f"{artifact.stem}_ensemble"),
                            tmp_path / "served", 0.0)
    assert served.failures == [] and len(served.predictions["annotations"]) > 0
    assert served.predictions["annotations"] == local.predictions["annotations"]


def test_predictions_through_the_served_ensemble_equal_local_predict(server, micro_fp32, tmp_path):
    _assert_served_ensemble_equals_local_predict(server, micro_fp32, tmp_path)


def test_a_d_fine_served_through_the_ensemble_equals_local_predict(dfine_server, micro_dfine_fp32, tmp_path):
    _assert_served_ensemble_equals_local_predict(dfine_server, micro_dfine_fp32, tmp_path)
    with TritonRunner(dfine_server.http_url, "dfine_fp32") as runner:
        assert isinstance(served_model(runner).record.model.config, DFineConfig)  # the contract names D-FINE
