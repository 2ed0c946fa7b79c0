"""Our export-first RT-DETRv2 (which also computes RT-DETR v1), D-FINE and DEIMv2 (its HGNetv2 sizes): one module
per part of the papers."""

from rtdetr_export.model.config import PRESETS, ModelConfig, SizeRange, preset
from rtdetr_export.model.deimv2 import Deimv2
from rtdetr_export.model.deimv2_config import DEIMV2_PRESETS, Deimv2Config, deimv2_preset
from rtdetr_export.model.deploy import fold_batchnorm, fuse_repvgg, prepare_for_deploy
from rtdetr_export.model.dfine import DFine
from rtdetr_export.model.dfine_config import DFINE_PRESETS, DFineConfig, dfine_preset
from rtdetr_export.model.rtdetr import RTDETRv2
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.model.source import HubRevision, WeightSource

__all__ = ["DEIMV2_PRESETS", "DFINE_PRESETS", "DFine", "DFineConfig", "Deimv2", "Deimv2Config", "HubRevision",
           "ModelConfig", "PRESETS", "RTDETRv2", "Sampler", "SizeRange", "deimv2_preset", "dfine_preset",
           "fold_batchnorm", "fuse_repvgg", "prepare_for_deploy", "preset", "WeightSource"]
