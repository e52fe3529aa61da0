"""Frozen-feature evaluation shared by ``ssl-siam probe``, the pretraining kNN monitor, studies and verification:
labelled datasets, encoder specs and cached feature extraction, classifiers (linear, kNN), scores and splits."""
