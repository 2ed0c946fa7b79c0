"""Hugging Face Hub model ids (``ORG/NAME[@REVISION]``), resolved to a local snapshot by ``huggingface_hub``.

``snapshot_download`` downloads when the Hub is reachable and otherwise returns the snapshot already in the local
cache; with ``HF_HUB_OFFLINE=1`` it never tries the network. Only ``config.json`` and the weights are fetched. The
commit the snapshot belongs to is asked of the library (``scan_cache_dir``), not read off folder names, and goes
into the provenance with the weights file's sha256.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.model.source import HubRevision

# What from_pretrained accepts as a model id; a name with a checkpoint suffix is a mistyped path, not an id.
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".onnx", ".json", ".engine")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def parse_hub_id(text: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) if ``text`` reads as ``ORG/NAME[@REVISION]``, else None."""
    match = _HUB_ID.match(text)
    if not match or ".." in text or match["repo"].lower().endswith(_FILE_SUFFIXES):
        return None
    return match["repo"], match["revision"]


def _offline() -> bool:
    from huggingface_hub import constants

    # The library reads HF_HUB_OFFLINE once, at import; a later change of the variable still counts here.
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _download_command(repo_id: str, revision: str | None) -> str:
    return f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")


def _commit_of(snapshot: Path, repo_id: str) -> str:
    from huggingface_hub import scan_cache_dir

    for repo in scan_cache_dir(_cache_dir()).repos:
        if repo.repo_id == repo_id and repo.repo_type == "model":
            for revision in repo.revisions:
                if Path(revision.snapshot_path).resolve() == snapshot.resolve():
                    return revision.commit_hash
    raise RTDetrExportError(f"{snapshot} is not a snapshot of {repo_id} in the Hugging Face cache {_cache_dir()}")


def resolve_hub_id(repo_id: str, revision: str | None) -> tuple[Path, HubRevision]:
    """(local snapshot folder, the resolved revision) of a Hub model; a model neither downloadable nor cached
    is a one-line error naming the cache folder and the command that downloads it."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise MissingDependencyError("Hub model ids need huggingface_hub: pip install huggingface_hub") from None
    offline = _offline()
    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    # Whichever weights file the repository has: the first pattern that the snapshot satisfies wins.
    snapshot = None
    for weights in WEIGHT_FILES:
        try:
            folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=["config.json", weights],
                                            local_files_only=offline))
        except LocalEntryNotFoundError:
            state = "HF_HUB_OFFLINE is set" if offline else "the Hub is not reachable"
            raise RTDetrExportError(
                f"{where} is not (fully) in the Hugging Face cache {_cache_dir()} and {state}; download it where "
                f"the Hub is reachable with `{_download_command(repo_id, revision)}` (same HF_HOME / HF_HUB_CACHE), "
                "or pass a local folder") from None
        except (HfHubHTTPError, ValueError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RTDetrExportError(f"cannot resolve the Hub model {where}: {first[:200]}") from None
        if (folder / weights).is_file():
            snapshot = folder
            break
    if snapshot is None:
        raise RTDetrExportError(f"the Hub model {where} has no {' or '.join(WEIGHT_FILES)} (in {folder}); "
                                "only transformers RT-DETR repositories load by id")
    return snapshot, HubRevision(repo_id, _commit_of(snapshot, repo_id), revision or "main")
