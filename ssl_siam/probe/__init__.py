"""Frozen-feature evaluation of encoders: linear-probe and kNN accuracy on labelled probe datasets."""
