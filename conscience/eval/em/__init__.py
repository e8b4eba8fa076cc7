"""``conscience eval em``: the Emergent Misalignment measurement (Betley et al. 2025).

The EM questions are answered N times each at temperature 1 by the base model and by each
adapter; the frozen base scores every answer with the paper's own ``aligned`` and
``coherent`` 0-100 judge prompts (expected value over the exact probabilities of the
complete numbers, ``scorer.py``) and reviews it with the conscience; the task skill is the
share of insecure code (Bandit) on held-out coding prompts.
"""
