"""torch -> ONNX graphs (traced, simplified, checked), graph checks, inspection and portability tables.

The whole job with precision, verification and writing is ``rtdetr_export.pipeline.export_onnx``.
"""

from rtdetr_export.export.torch_export import DEFAULT_OPSET, ExportedGraph, GraphOptions, export_graph

__all__ = ["DEFAULT_OPSET", "ExportedGraph", "GraphOptions", "export_graph"]
