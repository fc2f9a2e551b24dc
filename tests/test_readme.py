"""The README documents every setting and every CLI verb."""

from __future__ import annotations

from pathlib import Path

from api.cli import build_parser
from services.settings import setting_variables

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    variables = setting_variables()  # every section of the settings tree
    assert "GLASSBOX_FFMPEG" in variables and "GLASSBOX_WEBHOOK_SECRET" in variables
    for variable in variables:
        assert f"`{variable}`" in README, f"{variable} is not in the README"


def test_every_cli_verb_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for verb in sub.choices:  # type: ignore[union-attr]
        assert f"`glassbox {verb}" in README, f"glassbox {verb} is not in the README"


def test_quick_start_is_two_commands() -> None:
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
