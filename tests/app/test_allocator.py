"""tcmalloc preloaded into the serving processes: when to re-execute, and with what."""

from __future__ import annotations

import pytest

from app.allocator import Allocator, AllocatorError, preload_env


def test_auto_puts_tcmalloc_in_front_of_what_is_preloaded():
    env = {"LD_PRELOAD": "libgomp.so.1", "PATH": "/bin"}
    new = preload_env(Allocator.auto, env, find=lambda: "libtcmalloc_minimal.so.4")
    assert new == {"LD_PRELOAD": "libtcmalloc_minimal.so.4:libgomp.so.1", "PATH": "/bin"}
    assert preload_env(Allocator.auto, {}, find=lambda: "libtcmalloc.so.4") == {
        "LD_PRELOAD": "libtcmalloc.so.4"
    }


def test_no_reexec_once_preloaded_or_when_malloc_is_chosen_or_missing():
    found = lambda: "libtcmalloc_minimal.so.4"  # noqa: E731
    assert preload_env(Allocator.auto, {"LD_PRELOAD": "/x/libtcmalloc_minimal.so.4"}, found) is None
    assert preload_env(Allocator.system, {}, found) is None
    assert preload_env(Allocator.auto, {}, find=lambda: None) is None


def test_a_required_tcmalloc_that_is_missing_is_one_clear_error():
    with pytest.raises(AllocatorError, match="apt-get install libtcmalloc-minimal4"):
        preload_env(Allocator.tcmalloc, {}, find=lambda: None)
