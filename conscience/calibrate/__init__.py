"""``conscience calibrate``: fit calibration profiles for the judge on dev data."""
