"""An empty API or admin key is refused at start-up (it would let an empty bearer in)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.settings import Settings


@pytest.mark.parametrize("fields", [{"admin_key": ""}, {"api_keys": ["k", ""]}])
def test_empty_keys_are_invalid(fields):
    with pytest.raises(ValidationError):
        Settings(**fields)


def test_serve_refuses_an_empty_admin_key_in_one_line():
    env = {**os.environ, "CONSCIENCE_ADMIN_KEY": ""}
    done = subprocess.run(
        [sys.executable, "-m", "conscience.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: invalid settings: admin_key: String should have at least 1 character"]
