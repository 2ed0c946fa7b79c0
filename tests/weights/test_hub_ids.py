"""``--model ORG/NAME[@REVISION]`` resolves through huggingface_hub, with the network off, from the local cache.

No Hub is reachable from the tests, so the cache is prepared the way huggingface_hub lays it out (blobs named by
their git or LFS hash, snapshots of symlinks per commit, refs naming commits; ``scan_cache_dir`` must read it
back), with the trained fixture folder as the cached model.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rtdetr_export.artifact import (ONNX_FORMAT, ExportRecord, Header, IODescription, ModelRecord, OnnxRecord,
                                    SourceRecord)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import file_sha256
from rtdetr_export.model import HubRevision
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.pipeline.verification import reference_model
from rtdetr_export.weights import load_model
from rtdetr_export.weights.hub import parse_hub_id
from paths import ROOT, TESTS

huggingface_hub = pytest.importorskip("huggingface_hub")
hub_constants = pytest.importorskip("huggingface_hub.constants")

FIXTURE = TESTS / "data" / "fixture" / "rtdetrv2_shapes"
REPO = "acme/rtdetrv2-shapes"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def lay_out_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...]) -> Path:
    """Put ``folder``'s config.json and model.safetensors into ``cache`` as huggingface_hub stores a download."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    for sub in ("blobs", f"snapshots/{commit}", "refs"):
        (storage / sub).mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        data = (folder / name).read_bytes()
        # Blob names are the file's etag: the LFS sha256 for weights, the git blob sha1 for small text files.
        etag = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (storage / "blobs" / etag).write_bytes(data)
        (storage / "snapshots" / commit / name).symlink_to(Path("../../blobs") / etag)
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)
    return storage


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding REPO at COMMIT (refs main and v1.0), the network off by HF_HUB_OFFLINE."""
    cache = tmp_path / "hf_cache"
    lay_out_hub_cache(cache, REPO, FIXTURE, COMMIT, refs=("main", "v1.0"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scanned = huggingface_hub.scan_cache_dir(cache)
    assert [(r.repo_id, [rev.commit_hash for rev in r.revisions]) for r in scanned.repos] == [(REPO, [COMMIT])]
    return cache


@pytest.mark.parametrize("text, parsed", [
    ("PekingU/rtdetr_r50vd", ("PekingU/rtdetr_r50vd", None)),
    ("PekingU/rtdetr_v2_r18vd@main", ("PekingU/rtdetr_v2_r18vd", "main")),
    (f"org/name@{COMMIT}", ("org/name", COMMIT)),
    ("checkpoints/model.pth", None),
    ("/abs/path/model", None),
    ("a/b/c", None),
    ("../up/model", None),
])
def test_hub_ids_read_like_from_pretrained_ids_and_checkpoint_paths_do_not(text, parsed):
    assert parse_hub_id(text) == parsed


@pytest.mark.parametrize("revision", [None, "v1.0", COMMIT], ids=["default-branch", "tag", "commit"])
def test_a_cached_hub_id_loads_offline_and_its_provenance_pins_the_commit_and_the_weights_digest(
        revision, offline_cache):
    model_id = REPO if revision is None else f"{REPO}@{revision}"
    model = load_model(model_id)
    assert model.source.format == "transformers"
    assert model.source.hub == HubRevision(REPO, COMMIT, revision or "main")
    assert model.source.sha256 == file_sha256(FIXTURE / "model.safetensors")

    record = ModelRecord(SourceRecord.of(model.source), model.config)
    written = record.to_json()
    assert written["source"]["hub"] == {"repo_id": REPO, "revision": COMMIT, "requested": revision or "main"}
    assert written["source"]["sha256"] == file_sha256(FIXTURE / "model.safetensors")
    direct = load_model(FIXTURE)
    assert model.config == direct.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), direct.state_dict().values()))

    # An artifact's reference is found again from the pinned commit, with nothing but its record (as written).
    artifact = OnnxRecord(header=Header.now(ONNX_FORMAT), model=record, sampler=Sampler.for_export("default"),
                          input_size=tuple(model.config.image_size), input_size_range=None,
                          classes=list(model.config.class_names), precision="fp32",
                          export=ExportRecord(opset=17, head="raw"), io=IODescription((), ()))
    read_back = OnnxRecord.from_json(artifact.to_json(), "sidecar")
    assert read_back.model.source.hub == HubRevision(REPO, COMMIT, revision or "main")
    again = reference_model(read_back)
    assert again.source.hub.revision == COMMIT and again.source.sha256 == model.source.sha256


def test_an_uncached_hub_id_with_the_network_off_is_one_line_naming_the_cache_and_the_download_command(
        offline_cache):
    with pytest.raises(RTDetrExportError) as info:
        load_model("acme/not-downloaded@v2")
    message = str(info.value)
    assert "\n" not in message
    assert str(offline_cache.resolve()) in message or str(offline_cache) in message
    assert "`hf download acme/not-downloaded --revision v2`" in message
    assert "HF_HUB_OFFLINE is set" in message


@pytest.mark.slow
def test_the_cli_says_so_in_one_line_in_a_real_process_with_hf_hub_offline(tmp_path):
    cache = tmp_path / "empty_cache"
    cache.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "rtdetr_export", "describe", "--model", "acme/not-downloaded"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: acme/not-downloaded is not (fully) in the Hugging Face "
                                                   f"cache {cache}"), proc.stderr
    assert "`hf download acme/not-downloaded`" in lines[0]
