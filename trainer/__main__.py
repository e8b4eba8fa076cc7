"""``python -m trainer`` / ``accelerate launch -m trainer``: the ``conscience train`` command."""

from trainer.cli import train_app

train_app(prog_name="conscience train")
