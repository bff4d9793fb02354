"""The `vla-ros` command: every subcommand has --help, and every node module is an installed entry point."""

import argparse
import ast
import pkgutil

import pytest
from ros_harness import REPO, run_cli

import vla_ros.nodes
from vla_ros.cli import build_parser


def leaf_commands(parser: argparse.ArgumentParser, prefix=()):
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield prefix
        return
    for name, sub in actions[0].choices.items():
        yield from leaf_commands(sub, (*prefix, name))


COMMANDS = list(leaf_commands(build_parser()))


def test_the_documented_commands_exist():
    assert {("say",), ("launch",), ("doctor",), ("demo",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: vla-ros " + " ".join(command))
    assert len(text.splitlines()) > 3  # a description, not just a usage line


def test_top_level_help_runs_as_a_program():
    result = run_cli("--help")
    assert result.returncode == 0 and "launch" in result.stdout and "say" in result.stdout


def test_every_node_module_is_an_entry_point():
    tree = ast.parse((REPO / "setup.py").read_text())
    nodes = next(
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES"
    )
    entry_points = {elt.value for elt in nodes.elts}
    modules = {
        info.name for info in pkgutil.iter_modules(vla_ros.nodes.__path__)
        if "def main(" in (REPO / "vla_ros" / "nodes" / f"{info.name}.py").read_text()
    }
    assert modules == entry_points


def test_say_without_a_graph_fails_with_one_sentence():
    result = run_cli("say", "pick up the red block", "--timeout", "1", timeout_s=60)
    assert result.returncode == 1
    assert "no subscriber on /vla/instruction after 1 s" in result.stderr
    assert "Traceback" not in result.stderr
