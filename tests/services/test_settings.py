"""The settings tree: loaded from `GLASSBOX_*` variables once, a bad value refused naming its
variable, a variable that is no setting warned about."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import (
    NOT_SETTINGS,
    SECTIONS,
    RunnerSettings,
    Settings,
    StorageSettings,
    setting_variables,
    unknown_variables,
)
from storage.errors import ConfigurationError
from tests.test_cli import glassbox


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No GLASSBOX_* variable of the machine running the tests."""
    for name in list(os.environ):
        if name.upper().startswith("GLASSBOX_"):
            monkeypatch.delenv(name)
    yield monkeypatch


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "services.settings" and r.levelno == logging.WARNING
    ]


def test_the_tree_has_a_section_per_area(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.load()
    for section, cls in SECTIONS.items():
        assert type(getattr(settings, section)) is cls
    variables = setting_variables()
    assert variables["GLASSBOX_WEBHOOK_SECRET"] == ("webhooks", "webhook_secret")
    assert variables["GLASSBOX_FFMPEG"] == ("runner", "ffmpeg")
    assert variables["GLASSBOX_LLM_MODEL"] == ("llm", "llm_model")
    assert not NOT_SETTINGS & set(variables)


def test_sections_come_from_the_environment_unless_given(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("GLASSBOX_LLM_MODEL", "a-model")
    clean_env.setenv("GLASSBOX_WEBHOOK_ATTEMPTS", "2")
    clean_env.setenv("GLASSBOX_FFMPEG", "/opt/ffmpeg")
    clean_env.setenv("GLASSBOX_VIDEO_FPS", "5")
    storage = StorageSettings(data_dir=tmp_path)
    settings = Settings.load(storage=storage, runner=RunnerSettings(video_fps=12))
    assert settings.storage is storage
    assert settings.runner.video_fps == 12 and settings.runner.ffmpeg == "/opt/ffmpeg"
    assert settings.llm.llm_model == "a-model"
    assert settings.webhooks.webhook_attempts == 2
    assert Settings.load().runner.video_fps == 5


def test_an_unknown_variable_is_warned_about_with_the_setting_meant(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv("GLASSBOX_LLM_MODLE", "gpt-secret-value")
    clean_env.setenv("GLASSBOX_FROBNICATE", "1")
    clean_env.setenv("glassbox_webhook_secrett", "whsec-secret-value")
    with caplog.at_level(logging.WARNING, logger="services.settings"):
        settings = Settings.load()
    assert settings.llm.llm_model == "gpt-4o-mini"  # the misspelt variable is ignored
    assert sorted(warnings_of(caplog)) == [
        "GLASSBOX_FROBNICATE is not a Glassbox setting (see docs/settings.md)",
        "GLASSBOX_LLM_MODLE is not a Glassbox setting (did you mean GLASSBOX_LLM_MODEL?)",
        "glassbox_webhook_secrett is not a Glassbox setting "
        "(did you mean GLASSBOX_WEBHOOK_SECRET?)",
    ]
    assert "secret-value" not in caplog.text  # names only: a value may be a secret


def test_settings_and_variables_that_are_no_setting_are_not_warned_about(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in NOT_SETTINGS:  # GLASSBOX_API_KEY (clients), GLASSBOX_DEMO_PORT (make run), ...
        clean_env.setenv(name, "x")
    clean_env.setenv("GLASSBOX_LLM_MODEL", "a-model")
    clean_env.setenv("glassbox_headless", "false")  # names are case-insensitive
    with caplog.at_level(logging.WARNING, logger="services.settings"):
        settings = Settings.load()
    assert settings.runner.headless is False
    assert warnings_of(caplog) == []
    assert unknown_variables({"GLASSBOX_API_KEY": "k", "PATH": "/bin", "GLASSBOX_PORT": "1"}) == {}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GLASSBOX_LLM_TIMEOUT_S", "soon", "GLASSBOX_LLM_TIMEOUT_S: Input should be a valid"),
        ("GLASSBOX_LLM_MAX_RETRIES", "99", "GLASSBOX_LLM_MAX_RETRIES: Input should be less than"),
        ("GLASSBOX_LLM_PRICES", "{gpt: 1}", "GLASSBOX_LLM_PRICES: Value error, not valid JSON"),
        (
            "GLASSBOX_LLM_PRICES",
            '{"gpt": 0.15}',
            'GLASSBOX_LLM_PRICES: Value error, expected {"model": {"prompt": number',
        ),
        ("GLASSBOX_VIDEO_FPS", "60", "GLASSBOX_VIDEO_FPS: Input should be less than or equal"),
        ("GLASSBOX_WEBHOOK_ATTEMPTS", "0", "GLASSBOX_WEBHOOK_ATTEMPTS: Input should be greater"),
        ("GLASSBOX_PORT", "http", "GLASSBOX_PORT: Input should be a valid integer"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        Settings.load()
    assert str(refused.value).startswith(message), str(refused.value)


def test_a_price_table_is_read_at_start_up(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("GLASSBOX_LLM_PRICES", '{"m": {"prompt": 0.15, "completion": "0.6"}}')
    assert Settings.load().llm.price_table() == {"m": {"prompt": 0.15, "completion": 0.6}}


def test_the_cli_refuses_a_bad_llm_setting_before_doing_anything(tmp_path: Path) -> None:
    """Before, a bad GLASSBOX_LLM_* value failed the run that reached a goal block."""
    data_dir = tmp_path / "data"
    result = glassbox(
        "db",
        "upgrade",
        data_dir=data_dir,
        env={"GLASSBOX_LLM_TIMEOUT_S": "soon", "GLASSBOX_LLM_MODLE": "x"},
    )
    assert result.returncode == 2, result.describe()
    assert "configuration error: GLASSBOX_LLM_TIMEOUT_S: Input should be a valid number" in (
        result.stderr
    ), result.describe()
    assert "GLASSBOX_LLM_MODLE is not a Glassbox setting (did you mean GLASSBOX_LLM_MODEL?)" in (
        result.stderr
    ), result.describe()
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()  # refused before touching storage
