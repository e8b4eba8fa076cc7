"""How a judge's read-out carries over to data of another kind: leave one family out (dev).

    python benchmarks/readout_transfer.py FEATURES.npz [--profile PROFILE.json] \\
        [--dataset DEV.jsonl]

Reads the ``.features.npz`` that ``conscience calibrate`` writes beside a profile. Rows are
grouped into families by source (``xstest``, ``emergent-misalignment``, ``silver`` plain
kinds, ``silver-jb`` attack-styled kinds); for each family that holds both labels, the
read-out is refitted on the other families (regularisation chosen by 5-fold on them, as
``conscience calibrate`` does) and scored on the held-out family. A shipped ``--profile``
(same framework and layout) is scored on every family as it is. This is the dev-side proxy
for test sets of another kind (HarmBench's attack prompts): use it to choose, never test.

The second table is the same proxy for the read-out's *probabilities*: each family held out
in turn (single-label ones too), the read-out fitted on the rest with its probabilities from
5-fold predictions (``--probabilities folds``, the default) or softened on the rest's own
held-out sources (``sources-held-out``), and the expected calibration error of its predictions
for the family it did not see, pooled over families.

With ``--dataset`` (the rows the features were judged on) the attack-styled rows are split by
style (``jailbreak_styles.style_of``) and each style is held out in turn, the read-out fitted
once without any attack-styled row and once with the other styles: does seeing some attack
styles on both labels help on a style it has not seen?
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from app.conscience.calibration import CalibrationProfile
from benchmarks.jailbreak_styles import style_of
from conscience.calibrate.fit import fit
from conscience.eval.dataset import load_dataset
from conscience.eval.metrics import auroc, ece


def family(source: str) -> str:
    """The family a dev source belongs to."""
    if source.startswith("silver/jb-"):
        return "silver-jb"
    return source.split("/", 1)[0]


def _readout_scores(fitted, x: np.ndarray) -> np.ndarray:
    r = fitted.readout
    z = ((x - np.array(r.mean)) / np.array(r.scale)) @ np.array(r.weights) + r.intercept
    return 1 / (1 + np.exp(-z))


def _by_style(data: dict[str, np.ndarray], dataset: Path, families: np.ndarray) -> None:
    prompts = {item.id: item.prompt or "" for item in load_dataset(dataset)}
    y, raw, x = data["y"], data["raw"], data["features"]
    ids, tokens = data["token_ids"].tolist(), [str(t) for t in data["token_ids"]]
    jb = families == "silver-jb"
    styles = np.array(
        [style_of(prompts[str(i)]) if j else "-" for i, j in zip(data["ids"], jb, strict=True)]
    )
    without = fit(raw[~jb], x[~jb], ids, tokens, y[~jb], 0.05, "readout")
    print(
        "| attack style held out | n (H/B) | fitted without attack styles | with the other styles |"
    )
    print("|---|---|--:|--:|")
    pairs = []
    for style in sorted(set(styles.tolist()) - {"-"}):
        held = styles == style
        if len(set(y[held].tolist())) < 2:
            continue
        others = fit(raw[~held], x[~held], ids, tokens, y[~held], 0.05, "readout")
        truth = [bool(v) for v in y[held]]
        a = auroc(_readout_scores(without, x[held]).tolist(), truth)
        b = auroc(_readout_scores(others, x[held]).tolist(), truth)
        pairs.append((a, b))
        n_h = int(y[held].sum())
        print(
            f"| {style} | {int(held.sum())} ({n_h}/{int(held.sum()) - n_h}) | {a:.3f} | {b:.3f} |"
        )
    print(
        f"mean over styles: {np.mean([a for a, _ in pairs]):.3f} without, "
        f"{np.mean([b for _, b in pairs]):.3f} with the other styles"
    )


def _calibration_by_family(data: dict[str, np.ndarray], families: np.ndarray) -> None:
    y, raw, x, sources = data["y"], data["raw"], data["features"], data["sources"]
    ids, tokens = data["token_ids"].tolist(), [str(t) for t in data["token_ids"]]
    print("| family held out | n (H/B) | ECE, 5-fold probabilities | ECE, softened | slope |")
    print("|---|---|--:|--:|--:|")
    pooled: dict[str, list[float]] = {"folds": [], "softened": []}
    truth: list[bool] = []
    for name in sorted(set(families.tolist())):
        held, rest = families == name, families != name
        groups = [str(s) for s in sources[rest]]
        scores = {}
        for mode, key in (("folds", "folds"), ("sources-held-out", "softened")):
            fitted = fit(raw[rest], x[rest], ids, tokens, y[rest], 0.05, "readout", groups, mode)
            scores[key] = _readout_scores(fitted, x[held])
            slope = f"{fitted.dev.softening.slope:.2f}" if fitted.dev.softening else "-"
        labels = [bool(v) for v in y[held]]
        truth += labels
        for key in pooled:
            pooled[key] += scores[key].tolist()
        n_h = int(y[held].sum())
        print(
            f"| {name} | {int(held.sum())} ({n_h}/{int(held.sum()) - n_h}) "
            f"| {ece(scores['folds'].tolist(), labels):.3f} "
            f"| {ece(scores['softened'].tolist(), labels):.3f} | {slope} |"
        )
    print(
        f"pooled over held-out families: ECE {ece(pooled['folds'], truth):.3f} (5-fold "
        f"probabilities), {ece(pooled['softened'], truth):.3f} (softened)"
    )


def _profile_scores(profile: CalibrationProfile, data: dict[str, np.ndarray]) -> np.ndarray:
    readout = profile.readout
    assert readout is not None, "the profile has no read-out"
    index = {int(t): i for i, t in enumerate(data["token_ids"])}
    cols = [index[t] for t in readout.token_ids]
    x = (data["features"][:, cols] - np.array(readout.mean)) / np.array(readout.scale)
    z = x @ np.array(readout.weights) + readout.intercept
    return 1 / (1 + np.exp(-z))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", type=Path)
    parser.add_argument("--profile", type=Path, help="a shipped profile to score as it is")
    parser.add_argument("--dataset", type=Path, help="the judged rows: hold out attack styles")
    args = parser.parse_args()
    with np.load(args.features) as f:
        data = {key: f[key] for key in f.files}
    y, raw, x = data["y"], data["raw"], data["features"]
    families = np.array([family(str(s)) for s in data["sources"]])
    tokens = [str(t) for t in data["token_ids"]]
    shipped = None
    if args.profile:
        profile = CalibrationProfile.model_validate(json.loads(args.profile.read_text()))
        shipped = _profile_scores(profile, data)
    print(f"{len(y)} rows ({int(y.sum())} harmful) from {args.features.name}")
    print(
        "| family held out | n (H/B) | read-out fitted on the rest | question (raw) |"
        + (" shipped profile |" if shipped is not None else "")
    )
    print("|---|---|--:|--:|" + ("--:|" if shipped is not None else ""))
    held_aucs = []
    for name in sorted(set(families.tolist())):
        held = families == name
        if len(set(y[held].tolist())) < 2:
            continue
        rest = ~held
        fitted = fit(
            raw[rest], x[rest], data["token_ids"].tolist(), tokens, y[rest], 0.05, "readout"
        )
        held_auc = auroc(_readout_scores(fitted, x[held]).tolist(), [bool(v) for v in y[held]])
        held_aucs.append(held_auc)
        row = (
            f"| {name} | {int(held.sum())} ({int(y[held].sum())}/{int((1 - y[held]).sum())}) "
            f"| {held_auc:.3f} | {auroc(raw[held].tolist(), [bool(v) for v in y[held]]):.3f} |"
        )
        if shipped is not None:
            row += f" {auroc(shipped[held].tolist(), [bool(v) for v in y[held]]):.3f} |"
        print(row)
    everything = fit(raw, x, data["token_ids"].tolist(), tokens, y, 0.05, "readout")
    print(
        f"mean held-out family AUROC {np.mean(held_aucs):.3f}; "
        f"5-fold on all rows {everything.dev.auroc_readout:.3f}"
    )
    _calibration_by_family(data, families)
    if args.dataset:
        _by_style(data, args.dataset, families)


if __name__ == "__main__":
    main()
