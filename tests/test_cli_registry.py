"""The command registry: an ``ssl-siam`` command is one module of ``ssl_siam/cli/commands/`` whose name is in
``MODULES``; a module named there is in ``--help`` and runs through ``main`` with nothing else to edit."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types

import pytest

from ssl_siam.cli import commands, main

TODAY = {"pretrain", "finetune", "metric-train", "track-train", "track", "track-eval", "study", "verify", "score",
         "targets", "predict", "probe", "embed", "search", "split-scenes", "bench", "report", "cache", "stats",
         "recipes", "synthetic", "demo"}


def exit_code_command() -> types.ModuleType:
    """A command module as a new file would define it: exits with the code it is given."""
    module = types.ModuleType("ssl_siam.cli.commands.exit_code")
    module.NAME = "exit-code"
    module.HELP = "exit with the code given"

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("code", type=int)

    def run(args: argparse.Namespace) -> int:
        print(f"exit-code {args.code}")
        return args.code

    module.add_arguments, module.run = add_arguments, run
    return module


def test_every_command_is_one_module_with_the_four_names() -> None:
    names = [c.NAME for c in commands.COMMANDS]
    assert len(names) == len(set(names)), names
    assert set(names) == TODAY
    for command in commands.COMMANDS:
        assert command.__name__ == f"ssl_siam.cli.commands.{command.NAME.replace('-', '_')}"
        assert isinstance(command.HELP, str) and command.HELP
        assert callable(command.add_arguments) and callable(command.run)


def test_modules_names_the_commands_in_help_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [c.__name__.rsplit(".", 1)[1] for c in commands.COMMANDS] == list(commands.MODULES)
    monkeypatch.setitem(sys.modules, "ssl_siam.cli.commands.exit_code", exit_code_command())
    loaded = commands.load(("exit_code", "pretrain"))
    assert [c.NAME for c in loaded] == ["exit-code", "pretrain"]


def test_a_registered_module_is_a_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(commands, "COMMANDS", (*commands.COMMANDS, exit_code_command()))
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    assert "exit-code" in listed and "exit with the code given" in listed
    assert main(["exit-code", "3"]) == 3
    assert capsys.readouterr().out == "exit-code 3\n"


def test_an_unregistered_module_is_not_a_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["exit-code", "3"])
    assert done.value.code == 2
    assert "invalid choice: 'exit-code'" in capsys.readouterr().err


def test_the_parser_starts_without_torch() -> None:
    check = ("import sys; from ssl_siam.cli.parser import build_parser; build_parser().format_help(); "
             "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
