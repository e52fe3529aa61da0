"""Config: YAML + dotted overrides, type checks, unknown keys, round trip through the saved config."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.core.config import current_names, from_dict, load_config, parse_overrides, renamed, save_config, to_dict
from ssl_siam.core.errors import ConfigError
from ssl_siam.metric_learning.config import MetricConfig
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.study.config import StudyConfig
from ssl_siam.track.config import TrackConfig

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    size: int = 3
    scale: tuple[float, float] = (0.2, 1.0)
    bands: list[int] | None = None


@dataclass
class Outer:
    name: str = "x"
    lr: float = 0.1
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_overrides_parse_yaml_values() -> None:
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "d=null", "e=true", "f=hello"]) == {
        "a": {"b": 3, "c": [1, 2]}, "d": None, "e": True, "f": "hello"}


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner:\n  size: 5\n  bands: [4, 3, 2]\n")
    cfg = load_config(Outer, path, ["inner.size=7", "lr=1", "inner.scale=[0.1, 0.5]"])
    assert cfg.name == "y" and cfg.inner.size == 7 and cfg.inner.bands == [4, 3, 2]
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)  # int accepted for float
    assert cfg.inner.scale == (0.1, 0.5)


@pytest.mark.parametrize(("override", "message"), [
    (["inner.sise=3"], "unknown config key 'inner.sise'"),
    (["nme=3"], "unknown config key 'nme'"),
    (["inner.size=abc"], "inner.size: expected int, got 'abc'"),
    (["inner.size=2.5"], "inner.size: expected int"),
    (["flag=3"], "flag: expected bool"),
    (["inner.scale=[1]"], "inner.scale: expected 2 values"),
    (["inner.bands=[a]"], "inner.bands"),
    (["inner=3"], "inner: expected a mapping"),
    (["novalue"], "not of the form key.sub=value"),
])
def test_errors_name_the_key(override: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(Outer, None, override)


def test_literal_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="optim.name: expected one of adamw, sgd, lars, got 'adam'"):
        load_config(PretrainConfig, None, ["optim.name=adam"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(PretrainConfig, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(PretrainConfig, tmp_path / "missing.yaml")


SCHEMAS = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "metric": MetricConfig, "study": StudyConfig,
           "track": TrackConfig}
SHIPPED = sorted(str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").glob("*/*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load_and_round_trip(name: str, tmp_path: Path) -> None:
    schema = SCHEMAS.get(name.split("/")[0]) or next(v for k, v in SCHEMAS.items() if k in name)  # demo/<kind>_*
    cfg = load_config(schema, ROOT / "configs" / name, ["data.root=/x"])
    save_config(cfg, tmp_path / "config.yaml")
    assert to_dict(load_config(schema, tmp_path / "config.yaml")) == to_dict(cfg)


def test_cli_reports_unknown_key_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ssl_siam.cli", "pretrain", "train.bach_size=3"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "train.bach_size" in proc.stderr and "Traceback" not in proc.stderr


def test_partial_section_keeps_field_defaults_and_scalar_lists() -> None:
    from ssl_siam.change.config import FinetuneConfig

    cfg = load_config(FinetuneConfig, None, ["train.max_steps=3", "optim.lr=0.5", "data.root=/one/split"])
    assert cfg.train.batch_size == 8 and cfg.train.max_steps == 3  # the finetune default, not TrainConfig's
    assert cfg.optim.name == "adamw" and cfg.optim.lr == 0.5
    assert cfg.data.root == ["/one/split"]


def test_exponent_floats_without_a_dot() -> None:
    """YAML 1.1 reads `2e-3` as a string; a float field still takes it, while real strings stay errors."""
    from ssl_siam.ssl.config import PretrainConfig

    cfg = load_config(PretrainConfig, None, ["optim.lr=2e-3", "optim.clip_grad=1E5", "optim.min_lr=3e-1"])
    assert (cfg.optim.lr, cfg.optim.clip_grad, cfg.optim.min_lr) == (0.002, 100000.0, 0.3)
    with pytest.raises(ConfigError, match="optim.lr: expected float, got 'fast'"):
        load_config(PretrainConfig, None, ["optim.lr=fast"])


@dataclass
class Section:
    kind: str = renamed("new-a", {"old-a": "new-a", "old-b": "new-b"})
    other: list[str] = field(default_factory=list)


@dataclass
class WithRenamed:
    section: Section = field(default_factory=Section)


@dataclass
class Counted:
    kind: str = renamed("new-a", {"old-a": "new-a"})
    n: int = 0


@dataclass
class Named:
    kind: str = renamed("new-a", {"old-a": "new-a"})
    n: str = ""


@dataclass
class EitherSection:
    section: Counted | Named = field(default_factory=Counted)


def test_a_union_notes_a_renamed_value_once_from_the_branch_that_read_it() -> None:
    notes: list[tuple[str, str, str]] = []
    cfg = from_dict(EitherSection, {"section": {"kind": "old-a", "n": "x"}}, notes=notes)  # Counted fails at n
    assert cfg.section == Named("new-a", "x") and notes == [("section.kind", "old-a", "new-a")]


def test_a_renamed_value_is_read_under_its_current_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        assert load_config(WithRenamed, None, ["section.kind=old-b"]).section.kind == "new-b"
    assert "section.kind=old-b is deprecated: it is now called new-b" in caplog.text
    assert from_dict(WithRenamed, {"section": {"kind": "old-a"}}).section.kind == "new-a"  # a saved config
    assert load_config(WithRenamed, None, ["section.other=[old-a]"]).section.other == ["old-a"]  # only that field
    notes: list[tuple[str, str, str]] = []
    saved = {"section": {"kind": "old-a", "other": ["old-a"]}, "gone": 1}  # nothing else checked or changed
    assert current_names(WithRenamed, saved, notes) == {"section": {"kind": "new-a", "other": ["old-a"]}, "gone": 1}
    assert notes == [("section.kind", "old-a", "new-a")] and saved["section"]["kind"] == "old-a"
