"""Traced graphs remembered within one process, keyed by everything the trace reads.

Tracing is the expensive, repeated step of an export: torch.onnx's TorchScript pass rebuilds the same ~1300-node
graph (r18vd: seconds; the micro test model: about one second) each time a caller exports the same model with the
same trace-relevant options. Several callers do so in one process: ``select`` exports every CPU candidate (FP32,
INT8, ...) from one model; an API user writes FP32, FP16 and INT8 files in one script; a precision export traces
the same FP32 graph its FP32 sibling did. Precision conversion, simplification and verification start from the
traced graph, so they do not change what is remembered.

The key is a digest of everything the tracer reads, so a hit is the graph a new trace would write:
- every parameter and buffer (registered or not) by name, dtype, shape and bytes: the graph's constants;
- every submodule's class and its plain attributes (the sampler, top-k, flags such as sizes-in-graph, configs).
  A module holding anything else (a forward hook, an observer, an object of unknown make) is traced every time
  and not remembered: such an object's effect on the trace cannot be read, and an identity would not do either
  (Python reuses the identity of a freed object);
- the example inputs' dtypes, shapes and values, the input and output names, the opset, the dynamic axes, and
  the torch version.
The graph is kept serialized and parsed again for each caller, who may change it in place.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable

import onnx
import torch

# Serialized bytes kept, least recently used out first: every graph of a select run on r18vd (~80 MB each), or a
# test session's few dozen small graphs; a long-lived process holds at most this much.
CAPACITY_BYTES = 512 * 2**20

_graphs: OrderedDict[str, bytes] = OrderedDict()
_counts = {"traced": 0, "reused": 0}

# Module attributes the tracer never reads (torch's own bookkeeping; parameters, buffers and children are digested
# by name through named_parameters/named_buffers/named_modules instead).
_SKIPPED = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_state_dict_hooks",
            "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
            "_backward_hooks", "_backward_pre_hooks", "training"}


class _Unreadable(Exception):
    """An attribute whose effect on the trace the digest cannot read."""


def traced(key_parts: tuple, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
           trace: Callable[[], onnx.ModelProto]) -> onnx.ModelProto:
    """``trace()``'s graph, traced once per distinct (module, inputs, ``key_parts``) in this process."""
    try:
        key = trace_key(key_parts, module, inputs)
    except _Unreadable:
        _counts["traced"] += 1
        return trace()
    if key in _graphs:
        _graphs.move_to_end(key)
        _counts["reused"] += 1
        return onnx.load_from_string(_graphs[key])
    graph = trace()
    _counts["traced"] += 1
    serialized = graph.SerializeToString()
    _graphs[key] = serialized
    while _graphs and sum(map(len, _graphs.values())) > CAPACITY_BYTES:
        _graphs.popitem(last=False)
    return onnx.load_from_string(serialized)


def counts() -> dict[str, int]:
    """How many graphs this process traced and how many it reused (for tests and progress reports)."""
    return dict(_counts)


def clear() -> None:
    """Forget every remembered graph."""
    _graphs.clear()


def trace_key(key_parts: tuple, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> str:
    """The digest of everything the trace reads (the module text lists it); raises _Unreadable for a module that
    holds something it cannot read."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((torch.__version__, key_parts)).encode())
    for tensor in inputs:
        _update_tensor(digest, tensor)
    for name, sub in module.named_modules(remove_duplicate=False):
        digest.update(f"\0module {name} {type(sub).__module__}.{type(sub).__qualname__}".encode())
        for attribute, value in sorted(vars(sub).items()):
            if attribute not in _SKIPPED:
                digest.update(f"\0{attribute}=".encode())
                _update_value(digest, value)
    for name, tensor in [*module.named_parameters(remove_duplicate=False),
                         *module.named_buffers(remove_duplicate=False)]:
        digest.update(f"\0tensor {name}".encode())
        _update_tensor(digest, tensor)
    return digest.hexdigest()


def _update_tensor(digest, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().contiguous().cpu()
    digest.update(f"{tensor.dtype} {tuple(tensor.shape)}".encode())
    if tensor.numel():
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())


def _update_value(digest, value) -> None:
    """A plain attribute's value; raises _Unreadable for anything else (see the module text)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, enum.Enum, torch.dtype, torch.device)):
        digest.update(repr(value).encode())
    elif isinstance(value, os.PathLike):
        digest.update(repr(os.fspath(value)).encode())
    elif isinstance(value, torch.Tensor):
        _update_tensor(digest, value)
    elif isinstance(value, (tuple, list)):
        digest.update(f"{type(value).__name__}[".encode())
        for item in value:
            _update_value(digest, item)
            digest.update(b",")
        digest.update(b"]")
    elif isinstance(value, dict):  # a config's table, or one of torch's hook tables (empty unless hooked)
        digest.update(b"{")
        for item_key, item in value.items():
            _update_value(digest, item_key)
            digest.update(b":")
            _update_value(digest, item)
            digest.update(b",")
        digest.update(b"}")
    elif isinstance(value, (set, frozenset)):
        digest.update(repr(sorted(map(repr, value))).encode())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(type(value).__qualname__.encode())
        for field in dataclasses.fields(value):
            digest.update(f"{field.name}=".encode())
            _update_value(digest, getattr(value, field.name))
    else:
        raise _Unreadable(type(value).__qualname__)
