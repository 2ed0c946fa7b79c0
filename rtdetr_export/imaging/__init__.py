"""Pre- and post-processing shared by every backend: plain functions on numpy arrays."""

from rtdetr_export.imaging.boxes import cxcywh_to_xyxy, iou_matrix, paired_iou, sigmoid
from rtdetr_export.imaging.labels import COCO_CLASSES
from rtdetr_export.imaging.postprocess import Detections, postprocess
from rtdetr_export.imaging.preprocess import (IMAGE_SUFFIXES, decode_image, list_images, load_image, preprocess,
                                             preprocess_batch)

__all__ = ["COCO_CLASSES", "Detections", "IMAGE_SUFFIXES", "cxcywh_to_xyxy", "decode_image", "iou_matrix",
           "list_images", "load_image", "paired_iou", "postprocess", "preprocess", "preprocess_batch", "sigmoid"]
