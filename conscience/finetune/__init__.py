"""``conscience finetune``: SFT of a LoRA adapter on a task, optionally with the conscience's
DPO term (Emergent Alignment): every so many steps the policy drafts answers, the frozen base
reviews and rewrites them, and the (rewrite, draft) pairs add a DPO term to the loss."""
