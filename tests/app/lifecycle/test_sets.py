"""The lifecycle's default prompt sets ship inside the package (wheel and image included)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from app.lifecycle.sets import SHIPPED, benign_set, canary_set, harmful_set, load_set

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_need_no_checkout(tmp_path):
    absent = tmp_path / "no-shared-data"
    benign, harmful = benign_set(None, 16, absent), harmful_set(None, 16, absent)
    assert len(benign) == len(harmful) == 16
    assert sum(item.reference is not None for item in benign) >= 8  # the reference margin
    assert not set(benign) & set(harmful)
    assert len(canary_set(None, 16)) == 16


def test_shipped_sets_are_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["app"]
    files = sorted(SHIPPED.iterdir())
    assert {f.name for f in files} == {"benign.jsonl", "harmful.jsonl", "canaries.txt"}
    for file in files:
        relative = file.relative_to(ROOT / "app").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
        assert load_set(file)


def test_configured_file_replaces_the_default(tmp_path):
    path = tmp_path / "canaries.csv"
    path.write_text('prompt,answer\n"How do I boil an egg?","Boil it for eight minutes."\n')
    assert [item.chat for item in canary_set(path, 16)] == [
        [{"role": "user", "content": "How do I boil an egg?"}]
    ]
    assert benign_set(path, 16)[0].reference == "Boil it for eight minutes."
