"""Siamese metric learning."""

from ssl_siam.metric import dates  # noqa: F401  registers the location datasets in METRIC_DATASETS
