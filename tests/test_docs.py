"""README and docs/ stay truthful: every documented `ssl-siam` subcommand, flag and config key exists."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path

import pytest
from conftest import ROOT

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.cli.parser import build_parser
from ssl_siam.metric_learning.config import MetricConfig
from ssl_siam.ssl import OBJECTIVES
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.study.config import StudyConfig
from ssl_siam.track.config import TrackConfig

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GUIDES = ["architecture", "pretraining", "finetuning", "prediction-and-scoring", "metric-learning", "probes",
          "distributed", "failure-handling", "configs", "benchmark", "study", "tracking"]
SECTIONS = ("run_dir", "resume", "objective", "train", "optim", "data", "model", "loss", "augment", *OBJECTIVES,
            "knn", "finetune", "scene")
KEY = re.compile(rf"(?<![\w/.-])((?:{'|'.join(SECTIONS)})(?:\.[a-z_0-9]+)+)(?![\w/])")
FILE_SUFFIXES = {"py", "yaml", "md", "json", "pt", "png", "tif", "safetensors", "csv", "sbatch", "txt"}


def code_of(page: Path) -> list[str]:
    """The page's code: fenced blocks and inline `spans`, each as one string."""
    text = page.read_text()
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```[^\n]*\n.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def schema_keys(schema: type, prefix: str = "") -> set[str]:
    keys = set()
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        keys.add(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= schema_keys(hints[f.name], f"{prefix}{f.name}.")
    return keys


def test_the_guides_exist_and_the_readme_links_them() -> None:
    readme = (ROOT / "README.md").read_text()
    for guide in GUIDES:
        assert (ROOT / "docs" / f"{guide}.md").is_file(), guide
        assert f"(docs/{guide}.md)" in readme, guide


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_documented_commands_and_flags_exist(page: Path) -> None:
    commands = subparsers()
    all_flags = {o for p in commands.values() for a in p._actions for o in a.option_strings}
    problems = []
    for code in code_of(page):
        for line in code.replace("\\\n", " ").splitlines():
            for command, rest in re.findall(r"ssl-siam ([a-z][\w-]*)((?:(?!ssl-siam ).)*)", line):
                if command not in commands:
                    problems.append(f"unknown command `ssl-siam {command}`")
                    continue
                flags = {o for a in commands[command]._actions for o in a.option_strings} | {"--debug"}
                problems += [f"`ssl-siam {command}` has no {flag}" for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*",
                                                                                         rest) if flag not in flags]
            if re.fullmatch(r"--[a-z][\w-]*", line.strip()) and line.strip() not in all_flags | {"--debug"}:
                problems.append(f"no command has {line.strip()}")
    assert not problems, f"{page.name}: {sorted(set(problems))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_documented_config_keys_exist(page: Path) -> None:
    known = (schema_keys(PretrainConfig) | schema_keys(FinetuneConfig) | schema_keys(MetricConfig)
             | schema_keys(StudyConfig) | schema_keys(TrackConfig))
    examples = [code for code in code_of(page) if "unknown config key" not in code]  # not the typo example
    found = {key for code in examples for key in KEY.findall(code)}
    unknown = sorted(k for k in found if k not in known and k.rsplit(".", 1)[-1] not in FILE_SUFFIXES)
    assert not unknown, f"{page.name} documents config keys that do not exist: {unknown}"


def test_the_checker_catches_a_wrong_key_and_flag(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("Use `train.bach_size=8` and `ssl-siam predict --windw 3`.\n")
    assert KEY.findall(code_of(page)[0]) == ["train.bach_size"]
    assert "train.bach_size" not in schema_keys(PretrainConfig)
    assert "--windw" not in {o for a in subparsers()["predict"]._actions for o in a.option_strings}
