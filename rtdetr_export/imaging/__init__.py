"""Pre- and post-processing shared by every backend: plain functions on numpy arrays."""

from rtdetr_export.imaging.labels import COCO_CLASSES
from rtdetr_export.imaging.postprocess import Detections, cxcywh_to_xyxy, postprocess, sigmoid
from rtdetr_export.imaging.preprocess import IMAGE_SUFFIXES, list_images, load_image, preprocess, preprocess_batch

__all__ = ["COCO_CLASSES", "Detections", "IMAGE_SUFFIXES", "cxcywh_to_xyxy", "list_images", "load_image",
           "postprocess", "preprocess", "preprocess_batch", "sigmoid"]
