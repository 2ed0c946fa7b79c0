"""Our export-first RT-DETRv2 (which also computes RT-DETR v1): one module per part of the paper."""

from rtdetr_export.model.config import PRESETS, ModelConfig, SizeRange, preset
from rtdetr_export.model.deploy import fold_batchnorm, fuse_repvgg, prepare_for_deploy
from rtdetr_export.model.rtdetr import RTDETRv2
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.model.source import HubRevision, WeightSource

__all__ = ["HubRevision", "ModelConfig", "PRESETS", "RTDETRv2", "Sampler", "SizeRange", "fold_batchnorm", "fuse_repvgg",
           "prepare_for_deploy", "preset", "WeightSource"]
