"""Schema fuzzing in CI: a bounded schemathesis run against a live server's /openapi.json.

The same passes as ``benchmarks/fuzz_api.py`` (no key, wrong key, API key, admin key) with a
few cases per operation, on the session's tiny-model engine. One request at a time: the
shared engine must survive for the rest of the suite.
"""

from __future__ import annotations

import httpx
from fastapi.routing import APIRoute

from benchmarks.fuzz_api import ADMIN_KEY, API_KEY, answers_normally, passes, protected_operations
from benchmarks.fuzz_api import run_pass as st_run


def test_protected_operations_come_from_the_app_and_refuse_anonymous_calls(
    serve, tmp_path, tiny_model_dir
):
    served = serve(
        api_keys=[API_KEY],
        admin_key=ADMIN_KEY,
        adapters_dir=tmp_path / "adapters",
        model=str(tiny_model_dir),
    )
    guarded = protected_operations()
    assert "POST /v1/chat/completions" in guarded["api"]
    assert "POST /admin/adapters/pin" in guarded["admin"]
    for route in served.app.routes:  # everything under /v1 and /admin needs its key
        if isinstance(route, APIRoute) and route.path.startswith(("/v1/", "/admin/")):
            for method in route.methods:
                assert f"{method} {route.path}" in guarded["api"] + guarded["admin"]
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        for kind, operations in guarded.items():
            for operation in operations:
                method, path = operation.split(" ", 1)
                for header in ({}, {"Authorization": "Bearer wrong"}):
                    reply = client.request(method, path, headers=header, json={})
                    assert reply.status_code == 401, (operation, header, reply.text)
                other = ADMIN_KEY if kind == "api" else API_KEY  # the other key opens nothing
                reply = client.request(
                    method, path, headers={"Authorization": f"Bearer {other}"}, json={}
                )
                assert reply.status_code == 401, (operation, "other key")


def test_schemathesis_finds_no_server_error_hang_or_open_door(serve, tmp_path, tiny_model_dir):
    served = serve(
        api_keys=[API_KEY],
        admin_key=ADMIN_KEY,
        adapters_dir=tmp_path / "adapters",
        model=str(tiny_model_dir),
        flag_threshold=0.0,
    )
    frameworks = sorted(served.state.pipeline.catalog.names())
    results = []
    for name, header, protected in passes(protected_operations()):
        results.append(
            st_run(
                served.base_url,
                name,
                header,
                protected,
                examples=3,
                seed=7,
                request_timeout=30,
                out=tmp_path / name.replace(" ", "-"),
                frameworks=frameworks,
                workers=1,
            )
        )
        answers_normally(served.base_url)
    failed = [(r["pass"], r["tail"]) for r in results if r["exit_code"] != 0]
    assert not failed, failed
    assert sum(r["cases"] for r in results) >= 400
    api = next(r for r in results if r["pass"] == "api key")
    assert api["by_status"].get("2xx", 0) >= 10  # the fuzzer reached the pipeline
