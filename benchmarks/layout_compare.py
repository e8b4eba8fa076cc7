"""Compare two review layouts' judges on the same dev rows, paired (issue: review cost).

    python benchmarks/layout_compare.py \\
        var/profiles/layouts-qwen/qwen2.5-coder-0.5b-instruct.introspective.features.npz \\
        var/profiles/layouts-qwen/qwen2.5-coder-0.5b-instruct.introspective.continuation.features.npz

Reads the ``.features.npz`` that ``conscience calibrate`` writes beside each profile (the same
rows judged under each layout), refits each layout's choice exactly as ``conscience calibrate``
does (5-fold out-of-fold predictions), and reports, per score source (the question's raw
score; the read-out's out-of-fold score; the profile's deciding score), each layout's AUROC
and the paired bootstrap difference B - A with its 95% interval and p-value.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from conscience.calibrate.fit import fit
from conscience.eval.metrics import auroc, paired_difference

ROUNDS_SEED = 0


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _scores(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tokens = [str(t) for t in data["token_ids"]]
    fitted = fit(data["raw"], data["features"], data["token_ids"].tolist(), tokens, data["y"], 0.05)
    readout = fit(
        data["raw"],
        data["features"],
        data["token_ids"].tolist(),
        tokens,
        data["y"],
        0.05,
        "readout",
    )
    return {"question": data["raw"], "readout": readout.out_of_fold, "decision": fitted.out_of_fold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="features .npz of layout A")
    parser.add_argument("b", type=Path, help="features .npz of layout B (same rows)")
    args = parser.parse_args()
    a, b = _load(args.a), _load(args.b)
    if a["ids"].tolist() != b["ids"].tolist():
        raise SystemExit("error: the two files judged different rows")
    y = [bool(v) for v in a["y"]]
    sa, sb = _scores(a), _scores(b)
    print(f"{len(y)} rows ({sum(y)} harmful); A = {args.a.name}; B = {args.b.name}")
    print("| score | AUROC A | AUROC B | B - A [95% CI] | p |")
    print("|---|--:|--:|---|--:|")
    for name in ("question", "readout", "decision"):

        def stat(scores: np.ndarray):
            return lambda idx: auroc(scores[idx].tolist(), [y[i] for i in idx])

        diff, p = paired_difference(stat(sa[name]), stat(sb[name]), len(y), ROUNDS_SEED)
        print(
            f"| {name} | {auroc(sa[name].tolist(), y):.3f} | {auroc(sb[name].tolist(), y):.3f} "
            f"| {diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] | {p:.3f} |"
        )


if __name__ == "__main__":
    main()
