"""Shared training machinery: the one loop, its task contract, optimizers, runtime, run skeleton, checkpoints."""
