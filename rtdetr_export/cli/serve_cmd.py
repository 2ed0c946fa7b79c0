"""``rtdetr-export serve REPO``: the tritonserver bundled in the nvidia-pytriton wheel on a model repository, in the
foreground, until Ctrl-C or SIGTERM (serving/server.py's LocalTriton does the work)."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from pathlib import Path

import click

from rtdetr_export.cli.common import progress
from rtdetr_export.errors import RTDetrExportError


def _models(http_url: str) -> list[str]:
    """The repository's models as the server lists them (names only; readiness was checked at start)."""
    request = urllib.request.Request(f"http://{http_url}/v2/repository/index", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return sorted(entry["name"] for entry in json.load(answer))
    except (OSError, ValueError, KeyError):
        return []  # only for the banner: the server was ready, so a failure here is not the user's problem


@click.command("serve")
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the server listens on (0.0.0.0: every interface of this machine).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="HTTP (KServe v2) port; 0 picks a free one.")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              help="gRPC port; 0 picks a free one.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=8002, show_default=True,
              help="Prometheus metrics port; 0 picks a free one.")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True,
              help="Seconds to wait for every model to be ready.")
@click.option("--log-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Keep the server's own log in this file (default: a temporary one, removed at exit).")
@click.option("--json", "as_json", is_flag=True, help="Print the URLs as one JSON line once ready.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def serve_command(repository, host, http_port, grpc_port, metrics_port, timeout_s, log_file, as_json, quiet) -> None:
    """Serve a model REPOSITORY (from `rtdetr-export triton`) with the bundled tritonserver until Ctrl-C/SIGTERM."""
    from rtdetr_export.serving.server import LocalTriton

    if timeout_s <= 0:
        raise RTDetrExportError("--timeout must be > 0")
    if log_file is not None and log_file.exists():
        raise RTDetrExportError(f"{log_file} already exists; the server's log never replaces a file (pick another)")
    say = progress(quiet, as_json)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame) -> None:  # only a flag: the main loop stops the server in order
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = LocalTriton(repository, http_port, grpc_port, metrics_port, host=host, log_path=log_file,
                         stop_with_parent=True)
    try:
        say(f"[serve] starting tritonserver on {repository}")
        try:
            server.start(timeout_s, cancel=stop)
        except RTDetrExportError:
            if received:  # stopped on purpose while it loaded: not an error
                say("[serve] stopped before the server was ready")
                return
            raise
        urls = {"http": f"http://{server.http_url}", "grpc": f"grpc://{server.grpc_url}",
                "metrics": f"http://{server.client_host}:{server.metrics_port}/metrics"}
        if as_json:
            click.echo(json.dumps({**urls, "models": _models(server.http_url), "pid": server.process.pid}))
        else:
            click.echo(f"HTTP     {urls['http']}\ngRPC     {urls['grpc']}\nmetrics  {urls['metrics']}")
            say(f"[serve] ready: {', '.join(_models(server.http_url)) or 'no models listed'}; Ctrl-C or SIGTERM "
                "stops it")
        while not stop.wait(0.5):
            if server.process.poll() is not None:
                raise RTDetrExportError(f"tritonserver exited with code {server.process.returncode}: "
                                        f"{server.failure_reason()}")
        say("[serve] stopping (unloading the models)")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("[serve] stopped")
