"""``conscience eval``: measure the conscience on labelled data, honestly.

Modules: ``dataset`` (rows, JSONL/CSV parsing), ``convert`` (the shared public sets),
``runner`` (items against a server over HTTP, resumable), ``metrics`` (detection, calibration,
bootstrap CIs), ``injection`` (judge-aimed prompt injections), ``refusal`` (refusal detector),
``report`` (report.json/.md + plots), ``compare`` (two runs, paired bootstrap), ``cli``.
"""
