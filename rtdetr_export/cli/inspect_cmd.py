"""``rtdetr-export inspect``: what an ONNX file is, where it came from, and which runtimes can take it."""

from __future__ import annotations

from typing import Any

import click

from rtdetr_export.cli.common import emit_json
from rtdetr_export.pipeline import OnnxDescription, describe_onnx


def _shape(shape) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _provenance_lines(p: dict[str, Any]) -> list[str]:
    tool = p.get("tool") or {}
    lines = [f"provenance  {tool.get('name', '?')} {tool.get('version', '?')}, created {p.get('created')}"]
    src = p["model_source"]
    if src.get("format") == "random":
        model = f"random weights (seed {src.get('seed')})"
    else:
        model = f"{src.get('format')} {src.get('file') or '?'}  sha256 {src.get('sha256') or '?'}"
    lines.append(f"  model         RT-DETR{p.get('model_version')}, {model}")
    if src.get("hub"):
        lines.append(f"  hub           {src['hub']['repo_id']}@{src['hub']['revision']} "
                     f"(asked for {src['hub']['requested']})")
    size = "x".join(map(str, p.get("input_size") or []))
    size_range = p.get("input_size_range")
    if size_range:
        size = f"{'x'.join(map(str, size_range['min']))}..{'x'.join(map(str, size_range['max']))} (opt {size})"
    lines.append(f"  method        {p.get('method')} ({p.get('sampler')})   head {p.get('head')}   "
                 f"input {size}   "
                 f"precision {p.get('precision')}   classes {p.get('classes')}")
    export = p.get("export") or {}
    batch = "dynamic" if export.get("dynamic_batch") else export.get("batch")
    top_k = f", top-k {export['top_k']}" if export.get("top_k") else ""
    lines.append(f"  export        {export.get('exporter')} opset {export.get('opset')}, batch {batch}{top_k}, "
                 f"simplifier {export.get('simplifier') or 'none'}")
    libraries = ", ".join(f"{k} {v}" for k, v in (p.get("libraries") or {}).items())
    lines.append(f"  libraries     {libraries}")
    v = p.get("verification")
    if v is None:
        lines.append("  verification  none (exported with --no-verify)")
    else:
        verdict = "PASSED" if v["passed"] else "FAILED"
        batches = ", ".join(map(str, v["batches"]))
        lines.append(f"  verification  {verdict}: {v['candidate']} vs {v['reference']}, {v['inputs']} inputs, "
                     f"batch {batches}")
        for name, o in v["outputs"].items():
            mark = "ok" if o["passed"] else "FAIL"
            lines.append(f"    {name:<12} {o['metric']} {o['value']:.3g} (threshold {o['threshold']:g})  {mark}")
    if not p.get("op_census_matches_graph"):
        lines.append("  warning       the graph's ops differ from the recorded op census: edited after export?")
    return lines


def format_description(d: OnnxDescription) -> list[str]:
    """The human-readable report of ``describe_onnx``."""
    lines = [f"file        {d.file} ({_size(d.size_bytes)}, sha256 {d.sha256[:16]}...)",
             f"format      ONNX IR {d.ir_version}, opset {d.opset}, producer {d.producer or '?'}",
             f"graph       {d.nodes} node{'s' if d.nodes != 1 else ''}, {len(d.op_census)} op types, "
             f"{d.parameters:,} parameters in {d.initializers} initializers"]
    for kind in ("inputs", "outputs"):
        lines.append(kind)
        for v in d.io[kind]:
            lines.append(f"  {v['name']:<20} {v['dtype']:<8} {_shape(v['shape'])}")
    if d.provenance:
        lines += _provenance_lines(d.provenance)
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
    return lines


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect_command(file: str, as_json: bool) -> None:
    """Describe FILE.onnx: inputs/outputs, opset, op census, provenance, and per-runtime op support."""
    description = describe_onnx(file)
    if as_json:
        emit_json(description)
    else:
        for line in format_description(description):
            click.echo(line)
