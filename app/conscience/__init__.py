"""The conscience: frameworks, review prompts, label sets, calibration, read-out, verdict."""
