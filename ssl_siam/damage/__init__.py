"""Siamese damage segmentation (xBD): fusion, attention-gated UNet decoder, model, losses, task, training run,
sliding-window prediction, outputs and the xView2 metric."""
