"""Siamese metric learning."""
