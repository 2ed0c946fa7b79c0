"""Output files: refuse to clobber without --force, and never leave a half-written artifact behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from rtdetr_export.errors import RTDetrExportError


def check_output(path: str | Path, force: bool, suffix: str | None = None) -> Path:
    """Validate an output path up front (folder writable, no existing file unless ``force``)."""
    path = Path(path)
    if suffix and path.suffix != suffix:
        raise RTDetrExportError(f"{path}: output file name must end in {suffix}")
    if path.is_dir():
        raise RTDetrExportError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise RTDetrExportError(f"{path} already exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise RTDetrExportError(f"cannot write {path}: folder {parent} does not exist")
    if not _can_create_in(parent):
        raise RTDetrExportError(f"cannot write {path}: folder {parent} is not writable")
    return path


def _can_create_in(folder: Path) -> bool:
    # A real probe: permission bits say nothing for root, nor for read-only or special file systems.
    try:
        fd, probe = tempfile.mkstemp(prefix=".rtdetr-export-probe.", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target folder; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the artifact the permissions any new file of the user would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_outputs(paths: list[Path]) -> Iterator[list[Path]]:
    """``atomic_output`` for files that only make sense together (a split artifact's two graphs and sidecar):
    yield a temporary path for each; they replace ``paths``, in order, only if the block succeeds, and a failure
    while replacing puts back whatever the earlier ones replaced, so the folder holds all new files or none."""
    with contextlib.ExitStack() as stack:
        temps = [stack.enter_context(_temporary_beside(Path(path))) for path in paths]
        yield temps
        umask = os.umask(0)
        os.umask(umask)
        moved: list[tuple[Path, Path | None]] = []  # (target, its previous file kept aside, if any)
        try:
            for tmp, path in zip(temps, map(Path, paths)):
                os.chmod(tmp, 0o666 & ~umask)
                kept = None
                if path.exists():
                    kept = stack.enter_context(_temporary_beside(path))
                    os.replace(path, kept)
                moved.append((path, kept))
                os.replace(tmp, path)
        except BaseException:
            for path, kept in reversed(moved):
                if kept is not None and kept.exists():
                    os.replace(kept, path)
                elif kept is None and path.exists():
                    path.unlink()
            raise


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """An empty temporary file in ``path``'s folder, removed on exit unless something moved it away."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        if Path(tmp).exists():
            Path(tmp).unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (weights and engines can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_folder_creatable(folder: str | Path) -> Path:
    """Fail up front when ``folder`` (not yet there) could not be made: its nearest existing ancestor must be a
    writable folder. Nothing is created: commands make their output folder only when they have something to write."""
    folder = Path(folder)
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RTDetrExportError(f"cannot make {folder}: {parent} is a file")
    if not _can_create_in(parent):
        raise RTDetrExportError(f"cannot make {folder}: {parent} is not writable")
    return folder


def check_report_folder(folder: str | Path, force: bool = False) -> Path:
    """Fail before any measuring when ``folder`` cannot take a report (a file, a report.json there without
    ``force``, no writable parent); bench and eval write their report folders through this."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RTDetrExportError(f"{folder} is a file; --report takes a folder")
    if (folder / "report.json").exists() and not force:
        raise RTDetrExportError(f"{folder} already holds a report; pass --force to replace it")
    parent = folder if folder.exists() else folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise RTDetrExportError(f"cannot write a report into {folder}: {parent} is not writable")
    return folder


def write_report_files(folder: str | Path, texts: dict[str, str], force: bool = False) -> list[Path]:
    """Write ``{file name: text}`` into a report folder (bench, eval and serve-bench reports), each file atomically;
    refuses to replace a report without ``force``. Returns the paths written."""
    folder = check_report_folder(folder, force)
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            write_text_atomic(folder / name, text)
            written.append(folder / name)
    except OSError as exc:
        raise RTDetrExportError(f"cannot write the report into {folder}: {exc.strerror or exc}") from None
    return written
