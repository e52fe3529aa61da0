"""Augmentations for any band count and dtype: batched SSL views, joint pre/post/mask geometry, photometric jitter."""
