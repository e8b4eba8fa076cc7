"""The crash trials' invariants (``benchmarks/crash_trials.py``), checked on a ``LiveLoop``.

``check_after_restart``: invariants 1-3 after each kill (complete current version, served
within 30 s, no pair in two versions). ``acknowledged_problems``: invariant 4 (every
acknowledged pair queued or trained, except what a SIGKILLed server's buffer provably held).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import httpx

from app.adapter_registry import base_model_identity
from app.queue import open_queue

if TYPE_CHECKING:
    from benchmarks.crash_trials import LiveLoop

ADMIN_KEY, SERVED = "crash-admin-key", "tiny"
BUFFERED = re.compile(r"^conscience_queue_buffered ([0-9.e+]+)$", re.MULTILINE)


class Answer(NamedTuple):
    """One traffic request: its tag, when it was sent and answered, the status and action."""

    tag: str
    sent_at: float
    answered_at: float
    status: int
    action: str

    @property
    def acknowledged(self) -> bool:
        return self.status == 200 and self.action == "rewritten"


@dataclass
class ServerKill:
    """A server SIGKILL: when its buffer was read, when it was killed, what the buffer held."""

    read_at: float
    killed_at: float
    buffered: int | None  # conscience_queue_buffered just before; None: /metrics unreadable


def buffered_pairs(server_url: str) -> int | None:
    """The server's ``conscience_queue_buffered`` gauge (pairs not yet written)."""
    try:
        found = BUFFERED.search(httpx.get(f"{server_url}/metrics", timeout=10).text)
    except httpx.HTTPError:
        return None
    return int(float(found.group(1))) if found else None


def check_after_restart(loop: LiveLoop) -> list[str]:
    """Invariants 1-3 (see the module docstring); the problems found."""
    problems = []
    manifest = loop.registry.read_manifest()
    current = manifest.current if manifest else None
    if current:
        base = base_model_identity(loop.model, None)
        found = loop.registry.validate_version(current, base, 16)
        problems += [f"incomplete current version: {p}" for p in found]
    deadline = time.monotonic() + 30
    served, last = None, ""
    with httpx.Client(base_url=loop.server_url, timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                status = client.get(
                    "/admin/adapters", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
                ).json()
                wanted = status["manifest_current"]
                reply = client.post(
                    "/v1/chat/completions",
                    json={
                        "model": SERVED,
                        "messages": [{"role": "user", "content": "check"}],
                        "max_tokens": 2,
                    },
                )
                served = reply.json()["conscience"].get("adapter") if reply.is_success else None
                last = f"{reply.status_code} serving {served}, manifest {wanted}"
                if reply.is_success and served == wanted:
                    break
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last = repr(exc)
            time.sleep(0.5)
        else:
            problems.append(f"server not serving the manifest's version within 30 s: {last}")
    loop.observe_manifest()
    owners: dict[str, str] = {}
    for version, ids in sorted(loop.versions_seen.items()):
        for pid in ids:
            if pid in owners:
                problems.append(f"pair {pid} trained twice: {owners[pid]} and {version}")
            owners[pid] = version
    return problems


def acknowledged_problems(loop: LiveLoop) -> list[str]:
    """Invariant 4 once: acknowledged pairs neither queued nor trained, beyond what the
    server buffers held when SIGKILLed (those are counted in ``loop.lost_at_kill``)."""
    with open_queue(loop.queue_url) as q:
        loop.observe_manifest()
        prompts = {r.id: r.prompt[-1].content for r in q.records(include_acked=True)}
        unacked = {r.id for r in q.records()}
    trained = set().union(*loop.versions_seen.values()) if loop.versions_seen else set()
    by_tag = {}
    for pid, text in prompts.items():
        match = re.match(r"\[(\w+)\]", text)
        if match:
            by_tag[match.group(1)] = pid
    acknowledged = [a for a in loop.answers if a.acknowledged]
    kills = sorted(loop.server_kills, key=lambda k: k.killed_at)
    lost: dict[int, list[Answer]] = {}  # kill index -> the acknowledged answers it lost
    problems = []
    for answer in acknowledged:
        pid = by_tag.get(answer.tag)
        if pid is not None and (pid in trained or pid in unacked):
            continue
        # The server that answered was alive when the request was sent: the next kill's.
        after = [i for i, k in enumerate(kills) if k.killed_at >= answer.sent_at]
        if pid is None and after:
            lost.setdefault(after[0], []).append(answer)
            continue
        where = "not in the queue" if pid is None else "acked but in no version"
        context = event_context(loop, answer.answered_at)
        problems.append(f"acknowledged pair [{answer.tag}] {where} {context}")
    ages = []
    for i, pairs in sorted(lost.items()):
        kill = kills[i]
        late = sum(
            1 for a in acknowledged if a.answered_at >= kill.read_at and a.sent_at <= kill.killed_at
        )
        allowed = None if kill.buffered is None else kill.buffered + late
        ages += [kill.killed_at - a.answered_at for a in pairs]
        if allowed is None or len(pairs) > allowed:
            tags = ", ".join(a.tag for a in pairs)
            problems.append(
                f"server SIGKILL at {kill.killed_at:.2f} lost {len(pairs)} acknowledged pairs"
                f" ({tags}) but its buffer held {kill.buffered} (+{late} answered meanwhile)"
            )
    loop.lost_at_kill = {
        "pairs": len(ages),
        "kills_with_loss": len(lost),
        "buffered_at_kills": sum(k.buffered or 0 for k in kills),
        "oldest_s": round(max(ages), 3) if ages else None,
    }
    return problems


def event_context(loop: LiveLoop, at: float) -> str:
    """The kill/restart events around ``at`` (for a violation's message)."""
    before = [e for e in loop.events if e[0] <= at][-1:]
    after = [e for e in loop.events if e[0] > at][:1]
    context = ", ".join(f"{what} {t - at:+.2f}s" for t, what in before + after)
    return f"(events: {context or 'none'})"
