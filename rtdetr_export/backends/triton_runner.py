"""A model served by Triton Inference Server as a runner: the same infer(dict) -> dict over HTTP or gRPC.

``tritonclient`` speaks the protocol (``pip install 'tritonclient[http,grpc]'``). The URL picks it:
``grpc://host:8001`` for gRPC, ``http://host:8000`` or a bare ``host:8000`` for HTTP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtdetr_export.backends.base import Runner
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError

PROTOCOLS = ("http", "grpc")


def parse_url(url: str) -> tuple[str, str]:
    """(protocol, host:port) from ``grpc://h:p``, ``http://h:p`` or ``h:p`` (HTTP)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "http", url
    if scheme not in PROTOCOLS:
        raise RTDetrExportError(f"{url}: Triton URLs start with http:// or grpc://")
    return scheme, rest.rstrip("/")


def client_module(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise MissingDependencyError("talking to Triton needs tritonclient: pip install "
                                     "'tritonclient[http,grpc]>=2.40'") from None
    return module


def triton_error(exc: Exception) -> str:
    """tritonclient's error (or a socket error) as one line."""
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return " ".join(str(message).split())[:300]


class TritonRunner(Runner):
    """Runs ``model`` on the Triton server at ``url``; ``timeout_s`` bounds every call (no hang on a dead server)."""

    def __init__(self, url: str, model: str, timeout_s: float = 60.0):
        self.url, self.model, self.timeout_s = url, model, timeout_s
        self.protocol, self.address = parse_url(url)
        self.name = f"triton-{self.protocol}"
        self.client: Any = None
        self.outputs: list[str] = []

    def activate(self) -> None:
        module = client_module(self.protocol)
        try:
            if self.protocol == "grpc":
                self.client = module.InferenceServerClient(self.address)
                server_view = self.client.get_model_metadata(self.model, as_json=True, client_timeout=self.timeout_s)
            else:
                self.client = module.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                                           network_timeout=self.timeout_s)
                server_view = self.client.get_model_metadata(self.model)
        except Exception as exc:  # connection refused, unknown model, ...
            raise RTDetrExportError(f"Triton at {self.url}: model {self.model}: {triton_error(exc)}") from None
        self.outputs = [o["name"] for o in server_view["outputs"]]

    def deactivate(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    def inputs(self, feed: dict[str, np.ndarray]) -> list[Any]:
        from tritonclient.utils import np_to_triton_dtype

        module = client_module(self.protocol)
        made = []
        for name, array in feed.items():
            entry = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            entry.set_data_from_numpy(array)
            made.append(entry)
        return made

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        module = client_module(self.protocol)
        requested = [module.InferRequestedOutput(name) for name in self.outputs]
        try:
            if self.protocol == "grpc":
                result = self.client.infer(self.model, self.inputs(feed), outputs=requested,
                                           client_timeout=self.timeout_s)
            else:
                result = self.client.infer(self.model, self.inputs(feed), outputs=requested)
        except Exception as exc:
            raise RTDetrExportError(f"Triton at {self.url}: model {self.model}: {triton_error(exc)}") from None
        return {name: result.as_numpy(name) for name in self.outputs}
