"""Start and stop a real ``tritonserver`` on localhost: the one bundled in the ``nvidia-pytriton`` wheel.

That wheel carries the server binary, its Python backend and one backend stub per Python version, but no ONNX
Runtime or TensorRT backend, so it serves our repositories' Python-backend models (``--backend python``). Tests,
the load-test script and docs/serving.md use it; on a GPU machine run NVIDIA's container instead.

The stub links ``libpython3.X.so`` by name. Putting this interpreter's own library directory first on
``LD_LIBRARY_PATH`` makes the stub embed *this* interpreter (same prefix, same site-packages: onnxruntime,
openvino, pillow), so no system Python and no conda-pack execution environment is needed. Two things differ:

- The stub (Triton 2.51's Python backend) was compiled against the numpy 1.x ABI: under numpy 2 its tensors
  arrive empty or garbled. ``stub_site()`` is a folder with numpy < 2 (``pip install --target``; .ci/run makes it).
- The stub runs Python isolated (PYTHONPATH is ignored) but puts its working directory first on ``sys.path``, so
  the server runs in an overlay folder: that numpy, plus this very ``rtdetr_export`` package (the ensemble's
  pre-processing imports it), linked in.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rtdetr_export.errors import MissingDependencyError, RTDetrExportError

SITE_ENV = "RTDETR_EXPORT_TRITON_SITE"
DEFAULT_SITE = Path.home() / ".cache" / "rtdetr-export" / "triton-site"
SITE_HINT = f"python3 -m pip install --target {DEFAULT_SITE} 'numpy>=1.24,<2'"
INSTALL_HINT = "pip install 'tritonclient[http,grpc]>=2.40' && pip install --no-deps 'nvidia-pytriton>=0.5'"


def bundled_server() -> Path:
    """The ``tritonserver`` folder inside the installed nvidia-pytriton wheel (found without importing it: its
    Python side pins numpy<2, which we neither need nor install)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"no tritonserver: the nvidia-pytriton wheel is not installed ({INSTALL_HINT})")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise MissingDependencyError(f"{root}: no bin/tritonserver in the nvidia-pytriton wheel")
    return root


def stub_site() -> Path | None:
    """The numpy<2 folder for the stub ($RTDETR_EXPORT_TRITON_SITE or ~/.cache/rtdetr-export/triton-site); None
    when this interpreter's numpy is already 1.x."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return None
    site = Path(os.environ.get(SITE_ENV) or DEFAULT_SITE)
    if not (site / "numpy" / "__init__.py").is_file():
        raise MissingDependencyError(f"the Triton Python backend stub needs numpy<2, and {site} has none: {SITE_HINT}")
    return site


def _overlay(into: Path, site: Path | None) -> Path:
    """The stub's working directory: numpy<2 from ``site`` and this rtdetr_export, as symlinks."""
    import rtdetr_export

    overlay = into / "python"
    overlay.mkdir()
    if site is not None:
        for item in site.iterdir():
            if item.name.startswith("numpy"):
                os.symlink(item, overlay / item.name)
    os.symlink(Path(rtdetr_export.__file__).parent, overlay / "rtdetr_export")
    return overlay


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _check_port(host: str, port: int, what: str) -> None:
    """One line now rather than a bind error buried in the server's log after it has loaded every model."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RTDetrExportError(f"{what} port {port} on {host} is not free ({exc.strerror or exc}); pick "
                                    "another, or 0 for any free one") from None


def check_repository(repository: Path) -> Path:
    """The repository as an absolute path (the server runs in another folder), refused when it holds no model:
    Triton itself starts on an empty folder and serves nothing."""
    if not repository.exists():
        raise RTDetrExportError(f"{repository}: no such model repository (write one with `rtdetr-export triton`)")
    if not repository.is_dir():
        raise RTDetrExportError(f"{repository} is not a folder; a model repository is a folder of model folders")
    if not any(child.is_dir() and (child / "config.pbtxt").is_file() for child in repository.iterdir()):
        raise RTDetrExportError(f"{repository} holds no model (no NAME/config.pbtxt in it); write one with "
                                "`rtdetr-export triton ARTIFACT -o REPO`")
    return repository.resolve()


# Triton's model lifecycle line for a model that did not load; its reason is logged with escaped newlines (a
# Python traceback follows the message), of which the first line is the message.
_LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version \d+: (.*)")


def load_failures(log_text: str) -> dict[str, str]:
    """model name -> the first line of the reason Triton logged for not loading it."""
    found = {}
    for match in _LOAD_FAILURE.finditer(log_text):
        reason = match.group(2).split("\\n")[0].rstrip('"').strip()
        found.setdefault(match.group(1), reason)
    return found


def _backend_folder(root: Path, into: Path) -> Path:
    """A backends/ folder whose python/ holds the stub built for this interpreter's Python version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise MissingDependencyError(f"the nvidia-pytriton wheel has no Python backend stub for Python {version}")
    python = into / "backends" / "python"
    python.mkdir(parents=True)
    for item in (root / "backends" / "python").iterdir():
        if item.is_file():
            os.symlink(item, python / item.name)
    shutil.copy(stub, python / "triton_python_backend_stub")
    return into / "backends"


def _terminate_with_parent() -> None:
    """In the forked child, before exec: ask Linux for SIGTERM when the parent thread dies."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the server then outlives a killed parent
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


@dataclass
class LocalTriton:
    """A tritonserver process serving ``repository`` on ``host`` (ports 0: free ones); a context manager.

    ``log_path`` is the server's output (in a temporary folder removed by ``stop`` unless set by the caller).
    """

    repository: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    exit_timeout_s: int = 5
    host: str = "127.0.0.1"
    extra_env: dict[str, str] = field(default_factory=dict)
    # The server gets SIGTERM when the thread that started it ends (Linux PR_SET_PDEATHSIG), so a foreground
    # `rtdetr-export serve` killed with SIGKILL leaves no server behind. Off by default: a library caller that
    # starts the server from a short-lived thread would see it stop with that thread.
    stop_with_parent: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None
    _work: Path | None = field(default=None, repr=False)

    @property
    def client_host(self) -> str:
        """Where a client on this machine reaches the server (any-address binds answer on the loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        return f"{self.client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.client_host}:{self.grpc_port}"

    def start(self, timeout_s: float = 120.0, cancel: threading.Event | None = None) -> "LocalTriton":
        """Start the server and wait until every model is ready; ``cancel`` set while waiting stops it (and
        raises)."""
        root, site = bundled_server(), stub_site()
        self.repository = check_repository(Path(self.repository))
        for what, port in (("HTTP", self.http_port), ("gRPC", self.grpc_port), ("metrics", self.metrics_port)):
            if port:
                _check_port(self.host, port, what)
        self.http_port = self.http_port or _free_port(self.host)
        self.grpc_port = self.grpc_port or _free_port(self.host)
        self.metrics_port = self.metrics_port or _free_port(self.host)
        self._work = Path(tempfile.mkdtemp(prefix="rtdetr-triton-"))
        backends = _backend_folder(root, self._work)
        overlay = _overlay(self._work, site)
        env = dict(os.environ)
        # The wheel's own libraries (libcudart, found through the stub's $ORIGIN rpath before we copied it), then
        # this interpreter's libpython (see the module docstring).
        libs = [str(root.parent.parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or "",
                env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env.update(self.extra_env)
        self.log_path = self.log_path or self._work / "tritonserver.log"
        args = [str(root / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={backends}", f"--cache-directory={root / 'caches'}",
                f"--http-address={self.host}", f"--grpc-address={self.host}", f"--metrics-address={self.host}",
                f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
                f"--metrics-port={self.metrics_port}", "--allow-gpu-metrics=false",
                f"--exit-timeout-secs={self.exit_timeout_s}", "--strict-readiness=true"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True, cwd=overlay,
                                            preexec_fn=_terminate_with_parent if self.stop_with_parent else None)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                reason = self.failure_reason()
                self.stop()
                raise RTDetrExportError(f"tritonserver exited with code {self.process.returncode} while starting: "
                                        f"{reason}")
            if cancel is not None and cancel.is_set():
                self.stop()
                raise RTDetrExportError("stopped before the server was ready")
            if self.ready():
                return self
            time.sleep(0.25)
        reason = self.failure_reason()
        self.stop()
        raise RTDetrExportError(f"tritonserver was not ready after {timeout_s:.0f} s: {reason}")

    def failure_reason(self) -> str:
        """Why the server is not serving, in one line: the models that failed to load and Triton's reason for
        each, else the last lines of its log."""
        text = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
        failed = load_failures(text)
        if failed:
            return "; ".join(f"model '{name}' failed to load: {reason}" for name, reason in failed.items())
        return self.log_tail()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 5) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (Triton unloads its models and exits), SIGKILL for the whole process group if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            # Python-backend stubs outlive a server that exits while requests are in flight (measured: orphans
            # polling at ~3% CPU each); they share the server's process group, so end whatever is left of it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
