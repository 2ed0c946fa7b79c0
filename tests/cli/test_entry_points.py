"""The ways in: `python -m rtdetr_export` is the `rtdetr-export` command, and `import rtdetr_export` is light until
a name of the public API is used (then that name is the object its module defines)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rtdetr_export


def test_python_dash_m_runs_the_rtdetr_export_command(monkeypatch, capsys):
    # runpy.run_module(..., run_name="__main__") is what `python -m` calls (runpy._run_module_as_main), in this
    # process: a child interpreter would spend 3 s importing torch to print the same text.
    import runpy

    monkeypatch.setattr(sys, "argv", ["python -m rtdetr_export", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("rtdetr_export", run_name="__main__", alter_sys=True)
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("Usage: python -m rtdetr_export"), out
    for command in ("onnx", "trt", "verify", "inspect", "predict", "eval", "bench", "triton", "debug-precision"):
        assert f"  {command} " in out


def test_importing_the_package_loads_no_torch_until_an_api_name_is_used():
    probe = "import sys, rtdetr_export; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize("name", [name for name in rtdetr_export.__all__ if name not in ("__version__",)])
def test_every_public_name_resolves_to_its_modules_object(name):
    from importlib import import_module

    value = getattr(rtdetr_export, name)
    module = getattr(rtdetr_export, "_API", {}).get(name)
    assert module is None or value is getattr(import_module(module), name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'export_tflite'"):
        rtdetr_export.export_tflite  # noqa: B018
