"""The export tests' own ONNX Runtime vs PyTorch comparison, independent of the exporter's verification.

With the discrete sampler, a sampling point whose ``loc * size + 0.5`` lies within float noise of an integer
may be rounded to neighbouring cells by two correct float32 runtimes. Such a flip changes its own query by
the difference between two cells, and, through self-attention in the following decoder layers, every other
query of that image by a little (measured on r18vd: a flip at 4.8e-7 cells moved unflipped rows of its image
by 1.3e-3 px). The exporter's verification has to infer flips from outputs alone, because it verifies any
runtime. Here we can do better: we observe them. Each decoder layer's cell index tensor is added to the
graph's outputs, the reference is re-run reading exactly the cells ONNX Runtime read (each differing point
must be a neighbouring cell within ``FLIP_MARGIN`` of a boundary in the reference's own arithmetic), and the
outputs are then compared everywhere at the strict tolerances, with no row excused.
"""

from __future__ import annotations

from dataclasses import dataclass
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import torch

from rtdetr_export.artifact import onnx_record
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.model import query_selection
from rtdetr_export.model.deformable_attention import MSDeformableAttention
from rtdetr_export.verify.margins import FLIP_MARGIN

MAX_FLIPPED_FRACTION = 0.01  # of an image's queries, as the exporter's verification allows
TOLERANCE = {"logits": 1e-4, "pred_boxes": 1e-4, "labels": 0, "boxes": 1e-3, "scores": 1e-5}


def query_selection_tensor(graph: onnx.ModelProto) -> str:
    """Name of the encoder cells [B, Q] that query selection picked, in the order the decoder's queries take."""
    found = [node.output[1] for node in graph.graph.node if node.op_type == "TopK" and "/decoder/" in node.name]
    assert len(found) == 1, f"expected one query-selection TopK, found {len(found)}"
    return found[0]


def cell_index_tensors(graph: onnx.ModelProto) -> list[str]:
    """Names of the row indices that each discrete cross-attention gathers, in decoder-layer order (none for a
    bilinear graph: its gathers read four corners and rounding cannot flip them)."""
    record = onnx_record(graph, "the graph")  # None: a graph without our metadata, read as discrete
    if record is not None and record.sampler is not Sampler.GATHER_NEAREST:
        return []
    constants = {init.name for init in graph.graph.initializer}
    constants |= {out for node in graph.graph.node if node.op_type == "Constant" for out in node.output}
    return [node.input[1] for node in graph.graph.node
            if node.op_type == "Gather" and "cross_attn" in node.name and node.input[1] not in constants]


@dataclass
class OnnxRun:
    outputs: dict[str, np.ndarray]
    queries: np.ndarray  # [B, Q] the encoder cells query selection picked
    cells: list[np.ndarray]  # per decoder layer: flat row index [B * heads * Q * points] into B x cells rows

    def key(self) -> bytes:
        return b"".join(a.tobytes() for a in [self.queries, *self.cells])


def run_onnx(path, feed: dict[str, np.ndarray]) -> OnnxRun:
    """Run the file as shipped, then again exposing its query selection and cell indices (same outputs)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, feed)))
    graph = onnx.load(str(path))
    exposed = [query_selection_tensor(graph), *cell_index_tensors(graph)]
    graph.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in exposed)
    observed = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    results = observed.run(names + exposed, feed)
    # Exposing the indices must not change the run we compare: otherwise we would observe another one.
    for name, value in zip(names, results):
        assert np.array_equal(value, outputs[name]), f"exposing the indices changed {name}"
    return OnnxRun(outputs, results[len(names)], results[len(names) + 1:])


class ReadObservedCells:
    """Sampling observer (RTDETRv2.observe_sampling) that makes each discrete attention read the cells ONNX Runtime read, after checking
    that every point it changes is a flip: a neighbouring cell across a boundary within FLIP_MARGIN."""

    def __init__(self, observed: np.ndarray, shapes: list[tuple[int, int]], level_points: tuple[int, ...]):
        self.observed, self.shapes, self.level_points = observed, shapes, level_points
        self.level = 0
        self.flipped = None  # [B, Q]: queries with at least one changed point

    def __call__(self, loc: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, queries, heads = loc.shape[:3]
        cells = sum(h * w for h, w in self.shapes)
        first = sum(self.level_points[:self.level])
        start = sum(h * w for h, w in self.shapes[:self.level])
        assert (height, width) == self.shapes[self.level]
        self.level += 1
        index = self.observed.reshape(batch, heads, queries, -1).transpose(0, 2, 1, 3)
        index = index[..., first:first + loc.shape[3]] - start - cells * np.arange(batch)[:, None, None, None]
        theirs = torch.from_numpy(np.stack([index % width, index // width], -1))
        t = torch.stack([loc[..., 0] * width + 0.5, loc[..., 1] * height + 0.5], -1)  # the model's float32
        ours = torch.stack([torch.floor(t[..., 0]).clamp(0, width - 1),
                            torch.floor(t[..., 1]).clamp(0, height - 1)], -1).to(torch.int64)
        moved = theirs != ours
        if self.flipped is None:
            self.flipped = torch.zeros(batch, queries, dtype=torch.bool)
        if not moved.any():
            return loc
        # The boundary between the two cells is at the larger index; the reference's t must lie within the margin.
        boundary = torch.maximum(theirs, ours).to(torch.float64)
        distance = (t.double() - boundary).abs()
        assert ((theirs - ours).abs()[moved] == 1).all(), "ONNX Runtime read a cell that is not a neighbour"
        assert (distance[moved] < FLIP_MARGIN).all(), (
            f"ONNX Runtime read another cell for a point {distance[moved].max():.3g} cells from the boundary")
        self.flipped |= moved.any(-1).any(-1).any(-1)
        size = torch.tensor([width, height], dtype=loc.dtype)
        return torch.where(moved, theirs.to(loc.dtype) / size, loc)


class SelectObservedQueries:
    """Query selection that takes the encoder cells, in the order, that the ONNX run took, after checking
    they score as high as PyTorch's own top-k: runtimes may order or pick exactly or nearly tied cells
    differently, and the decoder's queries then come in another order."""

    def __init__(self, observed: np.ndarray):
        self.observed = torch.from_numpy(observed)

    def __call__(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        best = scores.max(-1).values
        own = torch.topk(best, k, dim=1).values
        theirs = best.gather(1, self.observed).sort(1, descending=True).values
        assert self.observed.shape == own.shape and all(len(set(row.tolist())) == k for row in self.observed)
        assert (theirs - own).abs().max() <= TOLERANCE["logits"], "ONNX Runtime selected other queries"
        return self.observed


def reference(model: torch.nn.Module, images: np.ndarray, run: OnnxRun) -> tuple[torch.Tensor, torch.Tensor, int]:
    """PyTorch's (logits, boxes) reading the queries and cells the ONNX run read, and how many queries flipped."""
    modules = [m for m in model.modules() if isinstance(m, MSDeformableAttention)]
    hooks = [ReadObservedCells(cells, model.decoder.anchor_shapes, m.num_points)
             for cells, m in zip(run.cells, modules)]
    with torch.no_grad(), mock.patch.object(query_selection, "select_topk", SelectObservedQueries(run.queries)), \
            model.observe_sampling(hooks + [None] * (len(modules) - len(hooks))):
        logits, boxes = model(torch.from_numpy(images))
    used = [hook for hook in hooks if hook.level]
    assert len(used) == len(run.cells), "the graph's decoder layers and the model's do not line up"
    flipped = sum(int(hook.flipped.sum()) for hook in used)
    for hook in used:
        assert hook.flipped.float().mean(1).max() <= MAX_FLIPPED_FRACTION, "too many of an image's queries flipped"
    return logits, boxes, flipped


def detections(logits: torch.Tensor, boxes: torch.Tensor, sizes: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
    """The original deploy post-processing, written out independently of rtdetr_export's heads."""
    scores, index = torch.topk(torch.sigmoid(logits).flatten(1), top_k, dim=-1)
    classes = logits.shape[-1]
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    xyxy = xyxy * torch.from_numpy(sizes).repeat(1, 2)[:, None, :].float()
    picked = torch.gather(xyxy, 1, (index // classes)[..., None].expand(-1, -1, 4))
    return {"labels": (index % classes).numpy(), "scores": scores.numpy(), "boxes": picked.numpy()}


def in_input_pixels(out: dict[str, np.ndarray], scale: np.ndarray) -> dict[str, np.ndarray]:
    """Detections with boxes rescaled from each image's original size to the model's input size: float32
    noise in a normalised box grows with the size it is multiplied by, and the limit is set at the input's."""
    return {**out, "boxes": out["boxes"] * scale[:, None, None]}


def pair_rows(want_rows: np.ndarray, got_rows: np.ndarray) -> np.ndarray:
    """One-to-one pairing of want's rows with got's, closest pairs first (identical rows pair in any order)."""
    dist = np.abs(want_rows[:, None, :] - got_rows[None, :, :]).max(-1)
    order = np.full(len(want_rows), -1)
    used = set()
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(flat), dist.shape[1])
        if order[i] < 0 and j not in used:
            order[i] = j
            used.add(j)
    return order


def parity_errors(want: dict[str, np.ndarray], got: dict[str, np.ndarray], names: list[str]) -> dict[str, float]:
    """Max abs error per output over every row. Rows may be re-paired only where near-tied scores let a
    runtime order them differently (< 5% of rows); no row is left out."""
    errors = dict.fromkeys(names, 0.0)
    for b in range(want[names[0]].shape[0]):
        order = np.arange(want[names[0]].shape[1])
        if not all(np.abs(want[n][b] - got[n][b]).max() <= TOLERANCE[n] for n in names):
            def rows(out):
                return np.concatenate([out[n][b].reshape(len(order), -1).astype(np.float64) for n in names], 1)
            order = pair_rows(rows(want), rows(got))
            moved = np.abs(rows(got)[order] - rows(got)).max(-1) > 0  # swapping identical rows is no move
            assert moved.mean() < 0.05, "more than 5% of the rows moved"
        for n in names:
            diff = np.abs(want[n][b].astype(np.float64) - got[n][b][order])
            errors[n] = max(errors[n], float(diff.max(initial=0.0)))
    return errors


def onnx_runtime_outputs(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, boxes) of the exporter's gather-bilinear graph of ``model`` on ONNX Runtime CPU (no cell indices:
    bilinear sampling has no flips; used against the original code's models)."""
    from rtdetr_export.export.torch_export import GraphOptions, export_graph

    exported = export_graph(model, GraphOptions(batch=images.shape[0], sampler=Sampler.parse("default", "gather")))
    assert "GridSample" not in exported.op_census
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(exported.graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    logits, boxes = session.run(["logits", "pred_boxes"], {"images": images.numpy()})
    return torch.from_numpy(logits), torch.from_numpy(boxes)
