"""rtdetr-export: turn a trained RT-DETRv2 into deployment artifacts you can trust."""

from rtdetr_export.errors import RTDetrExportError

__version__ = "0.1.0"

__all__ = ["RTDetrExportError", "__version__"]
