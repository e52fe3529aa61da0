"""Siamese single-object tracking in satellite image sequences (SiamFC, Bertinetto et al. 2016): frames from image
folders, multi-band stacks or video files with OTB / SatSOT style box annotations (`sequences`), a generator of small
moving cars and ships over drifting, changing-illumination backgrounds (`synthetic`), the model and its training on
the shared launcher and loop, the tracker, and the OTB one-pass evaluation with its plots (`metrics`, `plots`)."""
