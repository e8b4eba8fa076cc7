"""A model's generation_config.json fills the sampling fields a request leaves out.

As vLLM's ``--generation-config auto``: the request's own value wins; ``none`` turns it off.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.conscience.frameworks import FrameworkCatalog
from app.generation_defaults import GenerationDefaults
from app.pipeline import ConsciencePipeline
from app.policy import PolicySlot
from app.protocol import ChatCompletionRequest
from app.settings import Settings
from tests.support import ScriptedEngine

MODEL_DEFAULTS = {
    "do_sample": True,
    "temperature": 0.3,
    "top_p": 0.85,
    "top_k": 20,
    "repetition_penalty": 1.1,
    "max_new_tokens": 64,
    "eos_token_id": 2,
}


@pytest.fixture(scope="module")
def model_with_defaults(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """The tiny model with a hand-written generation_config.json."""
    model = tmp_path_factory.mktemp("gen") / "tiny-gen"
    shutil.copytree(tiny_model_dir, model)
    (model / "generation_config.json").write_text(json.dumps(MODEL_DEFAULTS))
    return model


def plan_for(defaults: GenerationDefaults, **body):
    request = ChatCompletionRequest.model_validate(
        {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], **body}
    )
    pipe = ConsciencePipeline(
        ScriptedEngine([], []),
        FrameworkCatalog.load(),
        Settings(),
        PolicySlot(),
        generation=defaults,
    )
    return pipe.plan(request, "req-1").sampling


def test_reads_sampling_fields_only(model_with_defaults):
    defaults = GenerationDefaults.from_model_dir(model_with_defaults)
    assert defaults.as_generation_config() == {
        "temperature": 0.3,
        "top_p": 0.85,
        "top_k": 20,
        "repetition_penalty": 1.1,
        "max_new_tokens": 64,
    }


def test_transformers_defaults_and_missing_files_count_as_unset(tmp_path):
    assert GenerationDefaults.from_model_dir(tmp_path) == GenerationDefaults()
    assert GenerationDefaults.from_model_dir(None) == GenerationDefaults()
    (tmp_path / "generation_config.json").write_text('{"top_k": 50, "temperature": 1.0}')
    assert GenerationDefaults.from_model_dir(tmp_path) == GenerationDefaults()
    (tmp_path / "generation_config.json").write_text('{"top_p": 7}')
    with pytest.raises(ValueError, match="Cannot read sampling defaults"):
        GenerationDefaults.from_model_dir(tmp_path)


def test_request_without_sampling_gets_the_models(model_with_defaults):
    sampling = plan_for(GenerationDefaults.from_model_dir(model_with_defaults))
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (0.3, 0.85, 20)
    assert sampling.repetition_penalty == 1.1
    assert sampling.max_tokens == 64  # the model's max_new_tokens, under the server's 256


def test_request_values_win(model_with_defaults):
    defaults = GenerationDefaults.from_model_dir(model_with_defaults)
    sampling = plan_for(defaults, temperature=0, top_p=1.0, max_tokens=100)
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens) == (0, 1.0, 100)
    assert sampling.top_k == 20  # not asked for: the model's still applies
    sampling = plan_for(defaults, top_k=-1, repetition_penalty=1.0)  # vLLM's extras
    assert (sampling.top_k, sampling.repetition_penalty, sampling.top_p) == (0, 1.0, 0.85)


def test_without_model_defaults_sampling_is_neutral():
    sampling = plan_for(GenerationDefaults())
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (1.0, 1.0, 0)
    assert sampling.repetition_penalty == 1.0
    assert sampling.max_tokens == 254  # the server's 256, cut to the scripted engine's room


def test_server_reads_the_served_models_defaults(serve, model_with_defaults, make_client):
    """On the real engine: the server picks the model's defaults up, vLLM accepts them."""
    served = serve(model=str(model_with_defaults), mode="off")
    assert served.state.pipeline.generation.top_k == 20
    client = make_client(served.base_url)
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert reply.choices[0].finish_reason in {"stop", "length"}
    off = serve(model=str(model_with_defaults), generation_config="none")
    assert off.state.pipeline.generation == GenerationDefaults()
