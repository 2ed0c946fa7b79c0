"""``rtdetr-export triton``: a Triton model repository from our artifacts, written whole or not at all.

Layout (Triton's): ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/1/model.{plan,onnx}``; the Python backend adds
``REPO/NAME/1/model.py`` (``serving/python_model.py``), ``--ensemble`` adds ``NAME_preprocess``,
``NAME_postprocess`` (raw head) and ``NAME_ensemble``. A split artifact (given as its sidecar or either graph) is
served as the ensemble ``NAME`` over its graphs and host step (serving/split.py). Everything is staged in a hidden
folder beside REPO and moved in by rename, so a failure leaves REPO as it was.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rtdetr_export.artifact import (ENGINE_SUFFIXES, ArtifactRecord, OpenVinoRecord, SplitRecord, open_artifact,
                                    sidecar_path, split_sidecar)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import file_sha256
from rtdetr_export.serving.config import (SERVED, TritonOptions, ensemble_configs, model_config, plan_batching,
                                          serving_backend, to_text)
from rtdetr_export.serving.split import check_split_backend, split_models, split_step_names

# The Python-backend model's source; read, never imported here (it imports Triton's triton_python_backend_utils).
TEMPLATE = Path(__file__).with_name("python_model.py")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class ServedModel:
    """One model folder written into the repository."""

    name: str
    role: str  # model, preprocess, postprocess, ensemble; a split's encoder, select, decoder, detections
    backend: str
    max_batch_size: int
    source: str | None = None  # the artifact it serves

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "backend": self.backend,
                "max_batch_size": self.max_batch_size, "source": self.source}


@dataclass
class RepositoryResult:
    """What ``write_repository`` wrote, and the warnings a user should read (static batches)."""

    repository: Path
    models: list[ServedModel] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"repository": str(self.repository), "models": [m.to_json() for m in self.models],
                "warnings": self.warnings}


def _model_name(artifact: Path, options: TritonOptions, count: int) -> str:
    if options.name and count > 1:
        raise RTDetrExportError("--name names one model; give one ARTIFACT, or drop --name to use each file's stem")
    name = options.name or re.sub(r"[^A-Za-z0-9_.-]", "_", artifact.stem)
    if not NAME.match(name):
        raise RTDetrExportError(f"model name {name!r}: use letters, digits, '_', '-' and '.' only")
    return name


def _check_artifact(artifact: Path) -> tuple[Path, ArtifactRecord]:
    """The file a model is served and named from, and its record: a split artifact's sidecar (given it or either
    graph; both graphs must be there, as recorded), else the artifact itself."""
    if not artifact.is_file():
        raise RTDetrExportError(f"{artifact}: no such file")
    record = open_artifact(artifact)  # a split's sidecar or graph opens the split's record, or a one-line error
    if isinstance(record, OpenVinoRecord):
        raise RTDetrExportError(f"{artifact} is an OpenVINO IR: `rtdetr-export triton` serves the ONNX file it was "
                                f"converted from ({record.onnx.file if record.onnx else 'MODEL.onnx'}) or an engine")
    if isinstance(record, SplitRecord):
        return split_sidecar(artifact), record
    if artifact.suffix.lower() not in ENGINE_SUFFIXES and not sidecar_path(artifact).is_file():
        raise RTDetrExportError(f"{artifact}: no sidecar {sidecar_path(artifact).name} next to it; the repository's "
                                "config comes from it (export with `rtdetr-export onnx`)")
    return artifact, record


def _check_repository(repository: Path, names: list[str], force: bool) -> None:
    if repository.exists() and not repository.is_dir():
        raise RTDetrExportError(f"{repository} is a file; -o takes a repository folder")
    if repository.is_dir() and any(repository.iterdir()) and not force:
        raise RTDetrExportError(f"{repository} already exists and is not empty; pass --force to replace the models "
                                "of the same names in it")
    if len(set(names)) != len(names):
        raise RTDetrExportError(f"two artifacts would be served under the same name ({', '.join(names)}); "
                                "rename one file")
    parent = repository.parent if str(repository.parent) else Path(".")
    if not parent.is_dir():
        raise RTDetrExportError(f"cannot write {repository}: folder {parent} does not exist")


def _write_model(stage: Path, name: str, config: Any, files: dict[str, Path | str]) -> None:
    version = stage / name / "1"
    version.mkdir(parents=True)
    (stage / name / "config.pbtxt").write_text(to_text(config))
    for target, source in files.items():
        if isinstance(source, Path):
            shutil.copyfile(source, version / target)
        else:
            (version / target).write_text(source)


def _move_in(stage: Path, repository: Path) -> None:
    """Whole repository in one rename when it is new; else each model folder swapped in by renames."""
    if not repository.exists():
        stage.rename(repository)
        return
    for folder in sorted(stage.iterdir()):
        target = repository / folder.name
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=repository))
            target.rename(old / folder.name)
        folder.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def write_repository(artifacts: list[str | Path], repository: str | Path, options: TritonOptions = TritonOptions(),
                     force: bool = False, log: Callable[[str], None] = lambda message: None) -> RepositoryResult:
    """Write a Triton model repository serving each artifact (see the module docstring)."""
    if not artifacts:
        raise RTDetrExportError("give at least one ARTIFACT (.onnx or .engine made by rtdetr-export)")
    options.validate()
    repository = Path(repository)
    planned = []
    for given in artifacts:
        path, record = _check_artifact(Path(given))
        name = _model_name(path, options, len(artifacts))
        split = isinstance(record, SplitRecord)
        backend = check_split_backend(path, options.backend) if split else serving_backend(path, options.backend)
        planned.append((path, name, record, backend, plan_batching(path, record, options)))
    names = [name for _, name, *_ in planned]
    all_names = names + [f"{n}_{s}" for n in names for s in ("preprocess", "postprocess", "ensemble")
                         if options.ensemble]
    all_names += [step for _, name, record, *_ in planned if isinstance(record, SplitRecord)
                  for step in split_step_names(name, record)]
    _check_repository(repository, all_names, force)

    result = RepositoryResult(repository)
    stage = Path(tempfile.mkdtemp(prefix=f".{repository.name}.partial.", dir=repository.parent or "."))
    try:
        template = TEMPLATE.read_text()
        for path, name, record, backend, plan in planned:
            if plan.warning:
                result.warnings.append(plan.warning)
                log(f"warning: {plan.warning}")
            if isinstance(record, SplitRecord):
                for model in split_models(name, path, record, backend, plan, options, template):
                    _write_model(stage, model.name, model.config, model.files)
                    result.models.append(ServedModel(model.name, model.role, model.backend, plan.max_batch_size,
                                                     str(path)))
                log(f"{name}: ensemble of {', '.join(split_step_names(name, record))} ({backend} graphs), "
                    f"max_batch_size {plan.max_batch_size}")
            else:
                config = model_config(name, path, record, backend, plan, options, file_sha256(path))
                files: dict[str, Path | str] = {SERVED[backend][0]: path}
                if backend == "python":
                    files["model.py"] = template
                _write_model(stage, name, config, files)
                result.models.append(ServedModel(name, "model", backend, plan.max_batch_size, str(path)))
                log(f"{name}: {backend}, max_batch_size {plan.max_batch_size}")
            if options.ensemble:
                for step_name, step in ensemble_configs(name, record, plan, options).items():
                    role = step_name.rsplit("_", 1)[1]
                    _write_model(stage, step_name, step, {} if role == "ensemble" else {"model.py": template})
                    result.models.append(ServedModel(step_name, role, "ensemble" if role == "ensemble" else "python",
                                                     plan.max_batch_size, str(path)))
                    log(f"{step_name}: {role}")
        _move_in(stage, repository)
    except OSError as exc:
        raise RTDetrExportError(f"cannot write {repository}: {exc.strerror or exc}") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return result
