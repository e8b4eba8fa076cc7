"""Trainer config: YAML then CLI precedence, validation, generated options with help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from trainer.cli import train_app
from trainer.config import config_fields, load_config


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("lora-r: 4\nbeta: 0.5\nframeworks: [three_laws]\nonce: true\n")
    config = load_config(path, beta=0.2, learning_rate=None)
    assert (config.lora_r, config.beta, config.frameworks, config.once) == (
        4,
        0.2,
        ["three_laws"],
        True,
    )
    assert config.learning_rate == 5e-5  # None means: not given


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lora_rank": 4}, "unknown trainer options: lora_rank"),
        ({"loss_weights": [1.0]}, "one weight per loss_type"),
        ({"min_pairs": 100, "round_size": 10}, "min_pairs <= round_size"),
        ({"heldout_fraction": 1.0}, "heldout_fraction"),
    ],
)
def test_bad_values_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, **values)


def test_every_field_is_an_option_with_help():
    assert all(field.metadata.get("help") for field in config_fields())
    result = CliRunner().invoke(train_app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for field in config_fields():
        assert f"--{field.name.replace('_', '-')}" in result.output


def test_cli_reports_bad_config_without_traceback(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("no_such_option: 1\n")
    result = CliRunner().invoke(train_app, ["--config", str(path)])
    assert result.exit_code == 2
    assert "unknown trainer options: no_such_option" in result.output


def test_cli_requires_a_model():
    result = CliRunner().invoke(train_app, ["--once"])
    assert result.exit_code == 2
    assert "--model" in result.output
