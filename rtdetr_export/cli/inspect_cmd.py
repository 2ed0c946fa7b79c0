"""``rtdetr-export inspect``: what an ONNX file is, where it came from, and which runtimes can take it."""

from __future__ import annotations

import click

from rtdetr_export.artifact import Verification
from rtdetr_export.cli.common import emit_json
from rtdetr_export.pipeline import (IrDescription, OnnxDescription, SplitDescription, describe_onnx, describe_openvino,
                                    describe_split, is_openvino, is_split)


def _shape(shape) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _provenance_lines(record, census_matches: bool) -> list[str]:
    header, src = record.header, record.model.source
    lines = [f"provenance  {header.tool} {header.tool_version}, created {header.created} "
             f"(sidecar schema {header.schema_version})"]
    if src.format == "random":
        model = f"random weights (seed {src.seed})"
    else:
        model = f"{src.format} {src.file or '?'}  sha256 {src.sha256 or '?'}"
    lines.append(f"  model         {record.model.config.model_name}, {model}")
    if src.hub:
        lines.append(f"  hub           {src.hub.pinned_id} (asked for {src.hub.requested})")
    size = "x".join(map(str, record.input_size))
    if record.input_size_range:
        size = f"{record.input_size_range} (opt {size})"
    lines.append(f"  method        {record.method} ({record.sampler})   head {record.head}   input {size}   "
                 f"precision {record.precision}   classes {len(record.classes)}")
    export = record.export
    batch = "dynamic" if export.dynamic_batch else export.batch
    top_k = f", top-k {export.top_k}" if export.top_k else ""
    lines.append(f"  export        {export.exporter} opset {export.opset}, batch {batch}{top_k}, "
                 f"simplifier {export.simplifier or 'none'}")
    libraries = ", ".join(f"{k} {v}" for k, v in header.libraries.items())
    lines.append(f"  libraries     {libraries}")
    lines += _verification_lines(record.verification)
    if not census_matches:
        lines.append("  warning       the graph's ops differ from the recorded op census: edited after export?")
    return lines


def _inputs(v: Verification) -> str:
    return "synthetic inputs" if v.inputs.synthetic else f"on {v.inputs}"


def _verification_lines(v: Verification | None) -> list[str]:
    if v is None:
        return ["  verification  none (exported with --no-verify)"]
    verdict = "PASSED" if v.passed else "FAILED"
    lines = [f"  verification  {verdict}: {v.candidate} vs {v.reference}, {_inputs(v)}, "
             f"batch {', '.join(map(str, v.batches))}"]
    for name, check in v.worst().items():
        mark = "ok" if check.passed else "FAIL"
        lines.append(f"    {name:<12} {check.metric} {check.value:.3g} (threshold {check.threshold:g})  {mark}")
    return lines


def format_description(d: OnnxDescription, provenance: bool = True) -> list[str]:
    """The human-readable report of ``describe_onnx`` (``provenance``: False for a split artifact's graph, whose
    record ``format_split`` shows once)."""
    lines = [f"file        {d.file} ({_size(d.size_bytes)}, sha256 {d.sha256[:16]}...)",
             f"format      ONNX IR {d.ir_version}, opset {d.opset}, producer {d.producer or '?'}",
             f"graph       {d.nodes} node{'s' if d.nodes != 1 else ''}, {len(d.op_census)} op types, "
             f"{d.parameters:,} parameters in {d.initializers} initializers"]
    for kind, specs in (("inputs", d.io.inputs), ("outputs", d.io.outputs)):
        lines.append(kind)
        for v in specs:
            lines.append(f"  {v.name:<20} {v.dtype:<8} {_shape(v.shape)}")
    if not provenance:
        pass
    elif d.record:
        lines += _provenance_lines(d.record, d.census_matches_record)
    else:
        lines.append(f"provenance  {d.provenance_note}")
        for key, value in d.metadata_props.items():
            lines.append(f"  metadata    {key}: {value[:100]}")
    lines.append("op census   " + ", ".join(f"{op} {n}" for op, n in d.op_census.items()))

    port = d.portability
    targets = port["targets"]
    width = max([len("op")] + [len(r["op"]) for r in port["rows"]])
    lines.append("portability (documented support; docs/portability.md lists the sources)")
    lines.append((f"  {'op':<{width}} {'count':>5}  " + "  ".join(f"{t:<13}" for t in targets)).rstrip())
    notes = []
    for row in port["rows"]:
        cells = []
        for t in targets:
            s = row["support"][t]
            cells.append(f"{s['verdict'] + ('*' if s['verdict'] != 'yes' and s['note'] else ''):<13}")
            if s["verdict"] != "yes" and s["note"]:
                notes.append(f"  * {row['op']} on {t}: {s['note']}")
        lines.append((f"  {row['op']:<{width}} {row['count']:>5}  " + "  ".join(cells)).rstrip())
    lines += notes
    lines.append("blockers")
    for t in targets:
        ops = port["blockers"][t]
        warning = port["opset_warnings"].get(t)
        line = f"  {t:<14} " + (", ".join(ops) if ops else "none")
        lines.append(line + (f"  ({warning})" if warning else ""))
    if port["measured"]:
        # The rows were measured on our r18vd export with this file's sampler, not on this file.
        source = port.get("measured_source") or {}
        model = source.get("model") or {}
        lines.append(f"measured    real runs of the {model.get('preset', '?')} export with the same sampler "
                     f"({source.get('date', '?')}; docs/portability.md, \"Measured\")")
    for m in port["measured"]:
        lines.append(f"measured    {m['target']} ({m['sampler']}): {m.get('result')}  {m.get('note', '')}".rstrip())
    if provenance:  # a split's graphs are not deployed alone: format_split shows the split's own edge lines
        lines += format_edge(port.get("edge") or [], port.get("edge_source") or {}, "this file")
    return lines


EXPECTED = {True: "expected to run", False: "NOT expected to run", None: "not measured with this sampler"}


def format_edge(edge: list[dict], source: dict, what: str) -> list[str]:
    """Per edge runtime: the verdict for ``what``, the fixture matrix's rows behind it, and the export that runs."""
    if not edge:
        return []
    # The fixture is named: its rows are RT-DETRv2's whatever model this file holds (D-FINE's own rows are in
    # docs/portability.md, "The trained D-FINE fixture").
    fixture = f" {source['model']}" if source.get("model") else ""
    lines = [f"edge        {what} on edge runtimes (measured on the trained fixture{fixture}, "
             f"{source.get('date', '?')}; docs/portability.md, \"Deploy to an NPU or phone\")"]
    for entry in edge:
        lines.append(f"  {entry['target']:<26} {EXPECTED[entry['expected']]}")
        lines += [f"    measured: {row}" for row in entry["measured"]]
        if entry["fix"]:
            lines.append(f"    make one that runs there: {entry['fix']}")
    return lines


def format_split(d: SplitDescription) -> list[str]:
    """The human-readable report of ``describe_split``: the record once, then each graph."""
    record = d.record
    lines = [f"split       {d.sidecar}: graph 1 {record.encoder.file} -> query selection on the host (host step "
             f"v{record.host_step}) -> graph 2 {record.decoder.file}"]
    lines += _provenance_lines(record, d.census_matches_record)
    lines += format_edge(d.edge, d.to_json()["edge_source"], "this split artifact")
    for number, (name, graph) in enumerate(d.graphs.items(), start=1):
        lines.append(f"graph {number} ({name})")
        lines += ["  " + line for line in format_description(graph, provenance=False)]
    return lines


def format_openvino(d: IrDescription) -> list[str]:
    """The human-readable report of ``describe_openvino``: the IR's files, how it was made and verified, its ops."""
    record, runtime = d.record, d.record.runtime
    lines = [f"file        {d.file} + {d.weights} ({_size(d.size_bytes)})",
             f"format      OpenVINO IR (OpenVINO {runtime.openvino}), weights stored {runtime.weights}",
             f"runtime     verified on {runtime.cpu or '?'} under the {runtime.inference_precision_hint} precision "
             f"hint (native bf16: {'yes' if runtime.cpu_bf16 else 'no'})"]
    if record.onnx:
        lines.append(f"converted   from {record.onnx.file} (sha256 {record.onnx.sha256[:16]}..., verified: "
                     f"{record.onnx.verification_passed})")
    nncf = record.nncf
    if nncf:
        lines.append(f"int8        {nncf.library}, recipe {nncf.recipe}: {nncf.quantized} layers quantized, "
                     f"{nncf.float} float")
        lines += [f"  kept float  {part}: {count} operations" for part, count in nncf.kept_float.items()]
    for kind, specs in (("inputs", record.io.inputs), ("outputs", record.io.outputs)):
        lines.append(kind)
        lines += [f"  {v.name:<20} {v.dtype:<8} {_shape(v.shape)}" for v in specs]
    lines += _provenance_lines(record, d.census_matches_record)
    lines.append("op census   " + ", ".join(f"{op} {n}" for op, n in d.op_census.items()))
    return lines


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect_command(file: str, as_json: bool) -> None:
    """Describe FILE.onnx: inputs/outputs, opset, op census, provenance, and per-runtime op support. A split
    artifact (its .json or either graph) is described whole; an OpenVINO IR (FILE.xml) by its record."""
    if is_openvino(file):
        description = describe_openvino(file)
        for line in [] if as_json else format_openvino(description):
            click.echo(line)
        if as_json:
            emit_json(description)
        return
    split = is_split(file)
    description = describe_split(file) if split else describe_onnx(file)
    if as_json:
        emit_json(description)
    else:
        for line in format_split(description) if split else format_description(description):
            click.echo(line)
