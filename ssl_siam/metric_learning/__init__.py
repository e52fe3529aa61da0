"""Siamese metric learning."""

from ssl_siam.metric_learning import dates  # noqa: F401  registers the location datasets in METRIC_DATASETS
