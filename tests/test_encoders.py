"""Encoder creation with any band count, local-only weights, export → load_encoder round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ssl_siam
from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.stats import BandStats
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder


def test_export_reloads_to_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = create_encoder("resnet18", in_chans=13).eval()
    stats = BandStats([0.0] * 13, [1.0] * 13, [0.5] * 13, [0.2] * 13)
    export_encoder(enc, tmp_path, EncoderMeta("resnet18", 13, objective="byol", step=7, bands=list(range(1, 14)),
                                              normalization=stats))
    loaded = ssl_siam.load_encoder(tmp_path).eval()
    x = torch.randn(2, 13, 64, 64)
    with torch.no_grad():
        assert torch.equal(enc(x), loaded(x))
    meta = loaded.ssl_siam_meta
    assert (meta.backbone, meta.in_chans, meta.objective, meta.step, meta.normalization) == ("resnet18", 13, "byol", 7,
                                                                                            stats)
    assert meta.weights == tmp_path / "encoder.safetensors"
    feats = ssl_siam.load_encoder(tmp_path / "encoder.safetensors", features_only=True)
    with torch.no_grad():
        maps = feats.eval()(x)
    assert [m.shape[1] for m in maps] == feats.feature_info.channels()


def test_pretrained_local_file_adapts_band_count(tmp_path: Path) -> None:
    rgb = create_encoder("resnet18", in_chans=3)
    torch.save({"state_dict": {**rgb.state_dict(), "fc.weight": torch.zeros(10, 512)}}, tmp_path / "w.pth")
    four = create_encoder("resnet18", in_chans=4, pretrained=tmp_path / "w.pth")
    assert four.conv1.weight.shape[1] == 4
    torch.testing.assert_close(four.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)


def test_bad_weights_and_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        create_encoder("resnet18", 3, pretrained=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(DataError, match="not a readable weight file"):
        create_encoder("resnet18", 3, pretrained=tmp_path / "junk.pth")
    torch.save(create_encoder("resnet34", 3).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(DataError, match="does not fit"):
        create_encoder("resnet18", 3, pretrained=tmp_path / "r34.pth")
    with pytest.raises(ConfigError, match="model.backbone"):
        create_encoder("resnet_does_not_exist", 3)
    with pytest.raises(DataError, match="encoder.safetensors"):
        ssl_siam.load_encoder(tmp_path)


def test_exports_written_before_the_typed_metadata_still_load(tmp_path: Path) -> None:
    """encoder.json as version 0.1 wrote it by hand (same keys, plain dicts) reads into EncoderMeta."""
    enc = create_encoder("resnet18", in_chans=3)
    export_encoder(enc, tmp_path, EncoderMeta("resnet18", 3))
    legacy = {"format": "ssl-siam-encoder", "backbone": "resnet18", "in_chans": 3, "timm_kwargs": {},
              "num_features": 512, "objective": "simsiam", "step": 120, "bands": None,
              "normalization": {"low": [0.0] * 3, "high": [255.0] * 3, "mean": [0.4] * 3, "std": [0.2] * 3}}
    (tmp_path / "encoder.json").write_text(json.dumps(legacy))
    meta = EncoderMeta.read(tmp_path)
    assert meta.step == 120 and meta.normalization == BandStats([0.0] * 3, [255.0] * 3, [0.4] * 3, [0.2] * 3)
    assert meta.to_json() == legacy
    (tmp_path / "encoder.json").write_text(json.dumps({"in_chans": 3}))
    with pytest.raises(DataError, match="encoder.json is not an encoder description"):
        EncoderMeta.read(tmp_path)
