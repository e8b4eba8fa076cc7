"""The serving process tree's memory allocator: tcmalloc, preloaded at start.

vLLM's CPU engine expects tcmalloc in ``LD_PRELOAD`` (its worker warns without it). Under
glibc's malloc the engine worker's heap grew steadily through a 30-minute soak (+15% with no
plateau); with tcmalloc it stays flat (docs/RELIABILITY.md, Soak). A preload only takes effect
when a program starts, so ``conscience serve`` re-executes itself once, with the library put
in front of ``LD_PRELOAD``, before anything else is loaded; vLLM's processes inherit it.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping
from enum import StrEnum

TCMALLOC_NAMES = ("tcmalloc_minimal", "tcmalloc")
INSTALL_HINT = "apt-get install libtcmalloc-minimal4"


class Allocator(StrEnum):
    """``auto``: tcmalloc when the system has it; ``tcmalloc``: required; ``system``: malloc."""

    auto = "auto"
    tcmalloc = "tcmalloc"
    system = "system"


class AllocatorError(RuntimeError):
    """tcmalloc was required and is not installed."""


def find_tcmalloc() -> str | None:
    """The shared library name of the system's tcmalloc (minimal preferred), or None."""
    for name in TCMALLOC_NAMES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def preloaded(env: Mapping[str, str]) -> bool:
    """Whether ``env``'s ``LD_PRELOAD`` already names a tcmalloc."""
    return "libtcmalloc" in env.get("LD_PRELOAD", "")


def preload_env(
    choice: Allocator,
    env: Mapping[str, str],
    find: Callable[[], str | None] = find_tcmalloc,
) -> dict[str, str] | None:
    """The environment to re-execute with, or None when this process can go on as it is."""
    if choice is Allocator.system or preloaded(env) or not sys.platform.startswith("linux"):
        return None
    library = find()
    if library is None:
        if choice is Allocator.tcmalloc:
            raise AllocatorError(f"allocator tcmalloc: tcmalloc is not installed ({INSTALL_HINT})")
        return None
    current = env.get("LD_PRELOAD", "")
    return {**env, "LD_PRELOAD": f"{library}:{current}" if current else library}


def reexec(env: Mapping[str, str]) -> None:
    """Replace this process by the same command line under ``env`` (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], dict(env))
