"""`rtdetr-export serve` and faults against the real tritonserver: it serves until SIGTERM and leaves no server or
Python-backend stub behind; bad set-ups are one line; a server killed under load ends its clients with an error
(no hang), leaves no stub, and serves again once restarted; malformed requests get an error each and the server
keeps serving.

tiny preset (320x320, dynamic batch), Python backend with ONNX Runtime, one thread: quick on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.errors import MissingDependencyError
from rtdetr_export.imaging import load_image, preprocess
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install -e '.[triton]'")

from rtdetr_export.backends.triton_runner import TritonRunner  # noqa: E402
from rtdetr_export.serving import TritonOptions, write_repository  # noqa: E402
from rtdetr_export.serving.load import run_load  # noqa: E402
from rtdetr_export.serving.server import LocalTriton, bundled_server, stub_site  # noqa: E402
from paths import ROOT, TESTS
from tiers import costly

# With test_triton_server.py on one worker: two servers on 2 cores at once would only slow each other down.
pytestmark = pytest.mark.xdist_group("triton_server")

PHOTOS = TESTS / "data" / "images"
WORKTREE = ROOT


def _needs_server() -> None:
    try:
        bundled_server()
        stub_site()
    except MissingDependencyError as exc:
        pytest.skip(f"no usable tritonserver: {exc}")


@pytest.fixture(scope="module")
@costly
def repository(tmp_path_factory) -> Path:
    from rtdetr_export.weights import load_model

    folder = tmp_path_factory.mktemp("serve")
    artifact = folder / "tiny.onnx"
    export_onnx(load_model(preset="tiny", method="discrete"), artifact,
                OnnxExportOptions(dynamic_batch=True, verify=False))
    write_repository([artifact], folder / "repo", TritonOptions(backend="python", ensemble=True, threads=1))
    return (folder / "repo").resolve()


def _processes_serving(repository: Path) -> list[str]:
    """Command lines of the live processes that serve ``repository``: the server names it in its arguments, each
    Python-backend stub names its model.py inside it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if str(repository) in cmdline and "zombie" not in state:
            found.append(cmdline.strip())
    return found


def _serve(repository: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    """``rtdetr-export serve`` on free ports, from this tree (the stub then imports this tree's package too)."""
    paths = [str(WORKTREE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    process = subprocess.Popen([sys.executable, "-m", "rtdetr_export", "serve", str(repository), "--http-port", "0",
                                "--grpc-port", "0", "--metrics-port", "0", "--json", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()  # printed once every model is ready (serve's own --timeout bounds it)
    if not line:
        process.wait(30)
        pytest.fail(f"serve exited with {process.returncode}: {process.stderr.read()}")
    return process, json.loads(line)


def _stopped(process: subprocess.Popen, timeout_s: float = 60.0) -> tuple[int, str]:
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"serve did not exit within {timeout_s:.0f} s")
    return process.returncode, process.stderr.read()


def _photo_feed() -> dict[str, np.ndarray]:
    return {"images": preprocess(load_image(PHOTOS / "cat_chelsea.jpg"), (320, 320))}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_serve_answers_until_stopped_then_leaves_no_server_or_stub(repository, stop_signal):
    _needs_server()
    process, urls = _serve(repository)
    try:
        assert urls["http"].startswith("http://127.0.0.1:") and urls["grpc"].startswith("grpc://127.0.0.1:")
        assert urls["models"] == ["tiny", "tiny_ensemble", "tiny_postprocess", "tiny_preprocess"]
        with TritonRunner(urls["grpc"], "tiny") as runner:
            assert runner.infer(_photo_feed())["logits"].shape == (1, 50, 80)
        serving = _processes_serving(repository)
        assert any("tritonserver" in c for c in serving) and any("triton_python_backend_stub" in c for c in serving)
    finally:
        process.send_signal(stop_signal)
        code, stderr = _stopped(process)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert _processes_serving(repository) == []


def test_serve_killed_outright_takes_its_server_and_stubs_with_it(repository):
    _needs_server()
    process, _ = _serve(repository)
    assert _processes_serving(repository) != []
    process.kill()  # SIGKILL: no handler runs, only the server's parent-death signal
    process.wait()
    deadline = time.monotonic() + 30.0  # the server unloads its models (--exit-timeout-secs 5) and exits
    while _processes_serving(repository) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_serving(repository) == []


def _serve_error(args: list[str], env: dict | None = None) -> str:
    result = CliRunner().invoke(main, ["serve", *args, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                                       "--quiet"], env=env)
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_serve_refuses_a_missing_or_empty_repository_in_one_line(tmp_path):
    _needs_server()
    assert "no such model repository" in _serve_error([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    assert "holds no model" in _serve_error([str(tmp_path / "empty")])


def test_serve_never_replaces_an_existing_log_file(repository, tmp_path):
    log = tmp_path / "server.log"
    log.write_text("an earlier run\n")
    assert "already exists" in _serve_error([str(repository), "--log-file", str(log)])
    assert log.read_text() == "an earlier run\n"


def test_serve_reports_the_servers_reason_for_a_model_that_fails_to_load(repository, tmp_path):
    _needs_server()
    broken = tmp_path / "repo"
    write_repository([repository.parent / "tiny.onnx"], broken, TritonOptions(backend="python", threads=1))
    (broken / "tiny" / "1" / "model.onnx").write_bytes(b"not a model")
    line = _serve_error([str(broken)])
    assert "model 'tiny' failed to load" in line and "ONNX Runtime cannot load it" in line
    assert _processes_serving(broken.resolve()) == []


def test_serve_without_the_numpy_1_site_says_how_to_make_it(repository, tmp_path):
    _needs_server()
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        pytest.skip("this interpreter's numpy is 1.x: the stub needs no separate site")
    line = _serve_error([str(repository)], env={"RTDETR_EXPORT_TRITON_SITE": str(tmp_path)})
    assert "needs numpy<2" in line and "pip install --target" in line


def test_serve_without_the_tritonserver_wheel_says_how_to_install_it(repository, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytriton" else find_spec(name, *a))
    line = _serve_error([str(repository)])
    assert "nvidia-pytriton wheel is not installed" in line and "pip install" in line


def test_serve_refuses_a_port_in_use_in_one_line(repository):
    _needs_server()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(repository), "--http-port", str(port), "--grpc-port", "0",
                                           "--metrics-port", "0", "--quiet"])
    assert result.exit_code == 1 and result.stderr.strip() == (
        f"error: HTTP port {port} on 127.0.0.1 is not free (Address already in use); pick another, or 0 for any "
        "free one")


@pytest.mark.slow
def test_a_server_killed_under_load_fails_its_clients_leaves_no_stub_and_serves_again_when_restarted(repository):
    _needs_server()
    process, urls = _serve(repository)
    pictures = [load_image(PHOTOS / "astronaut.jpg")]
    outcome: dict = {}
    load = threading.Thread(target=lambda: outcome.update(result=run_load(
        urls["http"], "tiny", pictures, clients=4, seconds=60.0, timeout_s=10.0)))
    try:
        load.start()
        time.sleep(2.0)  # requests in flight: a batch takes longer than the client loop's turn
        os.kill(urls["pid"], signal.SIGKILL)  # the server alone, as an OOM kill would: serve must notice
        killed = time.monotonic()
        load.join(40.0)
        assert not load.is_alive(), "clients hung after the server was killed"
        assert time.monotonic() - killed < 40.0
        code, stderr = _stopped(process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            _stopped(process)
    result = outcome["result"]
    assert result.aborted is not None and "stopped answering" in result.aborted
    assert code == 1 and stderr.strip().splitlines()[-1].startswith("error: tritonserver exited with code -9")
    assert _processes_serving(repository) == []

    process, urls = _serve(repository)
    try:
        with TritonRunner(urls["http"], "tiny") as runner:
            assert runner.infer(_photo_feed())["logits"].shape == (1, 50, 80)
    finally:
        process.send_signal(signal.SIGTERM)
        code, _ = _stopped(process)
    assert code == 0 and _processes_serving(repository) == []


@pytest.fixture(scope="module")
@costly
def server(repository):
    _needs_server()
    local = LocalTriton(repository, stop_with_parent=True).start()  # no server outlives a killed run
    yield local
    local.stop()


def _image_request(data: bytes) -> dict[str, np.ndarray]:
    return {"image": np.array([[data]], dtype=np.object_)}


GOOD = (PHOTOS / "astronaut.jpg").read_bytes()
MALFORMED = {
    # name: (model, feed, words of the error the client must get)
    "wrong_dtype": ("tiny", lambda: {"images": _photo_feed()["images"].astype(np.float16)}, "data-type"),
    "wrong_shape": ("tiny", lambda: {"images": _photo_feed()["images"][:, :, :200]}, "shape"),
    "missing_input": ("tiny", lambda: {}, "expected 1 inputs but got 0"),
    "image_as_float": ("tiny_ensemble", lambda: {"image": np.zeros((1, 1), np.float32)}, "data-type"),
    "empty_image": ("tiny_ensemble", lambda: _image_request(b""), "not a decodable image"),
    # 50 MB that start like a JPEG: the decoder reads the whole body before it gives up.
    "image_of_50_mb": ("tiny_ensemble", lambda: _image_request(
        b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(50 * 2 ** 20)), "not a decodable image"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_request_gets_an_error_and_the_next_good_one_is_served(server, case):
    model, feed, words = MALFORMED[case]
    with TritonRunner(server.http_url, model, timeout_s=60.0) as runner:
        with pytest.raises(Exception) as caught:
            runner.infer(feed())
        # Triton writes "data-type" or "data type" depending on the check that fails.
        assert words.replace("-", " ") in str(caught.value).replace("-", " "), str(caught.value)
    with TritonRunner(server.http_url, "tiny_ensemble", timeout_s=60.0) as ensemble:
        assert ensemble.infer(_image_request(GOOD))["scores"].shape == (1, 50)
    assert server.process.poll() is None
