"""Server-rendered HTML of the reviewer console (no front-end build, no script needed)."""

from __future__ import annotations

import time
from html import escape
from urllib.parse import urlencode

from app.queue import PairReview
from app.records import PairRecord

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:1.6em}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ccc;padding:4px;vertical-align:top}
th{background:#f3f3f3;text-align:left}textarea{width:100%;min-height:4em;font:inherit}
.pending{color:#a60}.approved{color:#070}.rejected{color:#b00}
.promoted{color:#070}.rejected_by_gate,.rolled_back_by_monitor{color:#b00}
form.inline{display:inline}pre{white-space:pre-wrap;margin:0;font:12px monospace}
.bar{background:#f7f7f7;padding:6px;border:1px solid #ddd}.note{color:#555}
"""


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def login(error: str | None = None) -> str:
    problem = f"<p class='rejected' id='login-error'>{escape(error)}</p>" if error else ""
    return page(
        "Conscience console: sign in",
        "<h1>Conscience reviewer console</h1>"
        f"{problem}<form method='post' action='/console/login'>"
        "<label>Admin key <input type='password' name='key' id='key' autofocus></label> "
        "<button type='submit' id='sign-in'>Sign in</button></form>",
    )


def _text(messages: list) -> str:
    return escape("\n".join(m.content for m in messages))


def _filters(q: str, framework: str, status: str, frameworks: list[str]) -> str:
    options = "".join(
        f"<option value='{escape(f)}'{' selected' if f == framework else ''}>{escape(f) or 'any'}"
        "</option>"
        for f in ["", *frameworks]
    )
    states = "".join(
        f"<option{' selected' if s == status else ''}>{s}</option>"
        for s in ("pending", "approved", "rejected", "all")
    )
    return (
        "<form method='get' action='/console' class='bar' id='filters'>"
        f"Search <input name='q' id='q' value='{escape(q)}'> "
        f"Framework <select name='framework' id='framework'>{options}</select> "
        f"Status <select name='status' id='status'>{states}</select> "
        "<button type='submit' id='apply'>Filter</button></form>"
    )


def pairs_table(
    pairs: list[tuple[PairRecord, PairReview]], q: str, framework: str, status: str, fws: list[str]
) -> str:
    back = escape(urlencode({"q": q, "framework": framework, "status": status}))
    rows = []
    for record, review in pairs:
        rid = escape(record.id)
        score = "" if record.score is None else f"{record.score:.3f}"
        edited = " (edited)" if review.edited else ""
        rows.append(
            f"<tr id='pair-{rid}'><td><pre>{_text(record.prompt)}</pre></td>"
            f"<td><pre>{_text(record.rejected)}</pre></td>"
            f"<td><form method='post' action='/console/pairs/{rid}?{back}'>"
            f"<textarea name='chosen'>{_text(record.chosen)}</textarea>"
            "<button name='action' value='approve' class='approve'>Approve</button> "
            "<button name='action' value='save' class='save'>Save edit</button> "
            "<button name='action' value='reject' class='reject'>Reject</button></form></td>"
            f"<td>{score}</td><td>{escape(record.framework)}</td>"
            f"<td class='{review.state}'><span class='state'>{review.state}</span>"
            f"{edited}</td></tr>"
        )
    body = "".join(rows) or "<tr><td colspan='6' class='note'>No pairs match.</td></tr>"
    return (
        f"<h2>Queued pairs</h2>{_filters(q, framework, status, fws)}"
        "<table id='pairs'><tr><th>Prompt</th><th>Rejected draft</th>"
        "<th>Chosen rewrite (editable)</th><th>Score</th><th>Framework</th><th>Status</th></tr>"
        f"{body}</table>"
    )


def _figures(verdict: dict | None) -> str:
    if not verdict:
        return "<span class='note'>not evaluated</span>"
    lines = [f"<b class='{escape(verdict['verdict'])}'>{escape(verdict['verdict'])}</b>"]
    if verdict.get("against") is not None or "candidate" in verdict:
        lines.append(f"against {escape(str(verdict.get('against') or 'base'))}")
    for role in ("candidate", "serving"):
        figures = verdict.get(role)
        if figures:
            b, h = figures["benign"], figures["harmful"]
            margin = "n/a" if b.get("ref_margin") is None else f"{b['ref_margin']:.3f}"
            lines.append(
                f"{role}: benign refusals {b['refusal_rate']:.2f}, length {b['mean_tokens']:.1f}"
                f" tok, ref margin {margin}; harmful flags {h['flag_rate']:.2f}"
            )
    lines += [escape(r) for r in verdict.get("reasons") or []]
    return "<br>".join(lines)


def adapters_table(status: dict | None) -> str:
    if status is None:
        return "<h2>Adapter versions</h2><p class='note'>This server follows no registry.</p>"
    verdicts = status["verdicts"]
    versions = sorted(set(verdicts) | set(status["loaded"]) | set(status["rejected"]))
    rows = "".join(
        f"<tr id='version-{escape(v)}'><td>{escape(v)}"
        f"{' <b>(in service)</b>' if v == status['current'] else ''}</td>"
        f"<td>{_figures(verdicts.get(v))}</td></tr>"
        for v in reversed(versions)
    )
    monitor = status.get("monitor")
    canary = ""
    if monitor:
        cur = monitor["current"]
        when = time.strftime("%H:%M:%S", time.localtime(monitor["at"]))
        canary = (
            f"<p id='monitor'>Canary run {when} on {escape(str(monitor['version']))}: flags "
            f"{cur['flag_rate']:.2f}, refusals {cur['refusal_rate']:.2f}, length "
            f"{cur['mean_tokens']:.1f} tok; crossed: {escape(', '.join(monitor['crossed']))}</p>"
        )
    rollbacks = "".join(
        f"<li>{escape(r['version'])} → {escape(r['to'])}: {escape(', '.join(r['bounds']))}</li>"
        for r in status["rollbacks"]
    )
    return (
        "<h2>Adapter versions</h2>"
        f"<p>In service: <b id='current'>{escape(str(status['current'] or 'base'))}</b>; "
        f"previous: {escape(str(status['previous'] or '-'))}; following the manifest: "
        f"{'yes' if status['following'] else 'no (pinned)'}; gate: "
        f"{'on' if status['gate_enabled'] else 'off'}</p>"
        "<form method='post' action='/console/adapters/rollback' class='inline'>"
        "<button id='rollback'>Roll back to previous</button></form> "
        "<form method='post' action='/console/adapters/follow' class='inline'>"
        "<button id='follow'>Follow the manifest</button></form>"
        f"{canary}<table id='versions'><tr><th>Version</th><th>Gate / monitor</th></tr>{rows}"
        f"</table>{'<h3>Automatic rollbacks</h3><ul>' + rollbacks + '</ul>' if rollbacks else ''}"
    )
