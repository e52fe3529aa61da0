"""Frozen-feature evaluation of encoders: linear-probe and kNN accuracy on labelled probe datasets."""

from ssl_siam.probe.classifiers import knn_predict, knn_votes, linear_probe
from ssl_siam.probe.datasets import DATASETS, FolderDataset, ProbeDataset, XBDCropDataset, combine_views, open_dataset
from ssl_siam.probe.features import EncoderSpec, encoder_features, extract_features, parse_encoder_spec
from ssl_siam.probe.metrics import accuracy, confusion_matrix, macro_f1, per_class_f1
from ssl_siam.probe.run import ProbeRow, run_probe, write_outputs
from ssl_siam.probe.splits import group_split, stratified_split

__all__ = [
    "DATASETS", "EncoderSpec", "FolderDataset", "ProbeDataset", "ProbeRow", "XBDCropDataset", "accuracy",
    "combine_views", "confusion_matrix", "encoder_features", "extract_features", "group_split", "knn_predict",
    "knn_votes", "linear_probe", "macro_f1", "open_dataset", "parse_encoder_spec", "per_class_f1", "run_probe",
    "stratified_split", "write_outputs",
]
