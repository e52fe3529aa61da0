"""Siamese change detection: models/ (encoder adapter, fusion, attention gates, UNet decoder), tasks/ (damage,
binary, semantic: one class each, registered), datasets/ (one class per published layout, registered), metrics/
(xView2, binary change, SECOND), the finetuning (config, data, training, losses, validate, run) and inference
(sliding windows, predict, outputs, evaluate)."""
