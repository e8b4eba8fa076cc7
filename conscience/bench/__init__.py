"""``conscience bench``: the conscience's cost against plain vLLM, side by side.

Servers run one at a time as subprocesses with the same engine settings (``servers``); a
bounded async load generator drives each (``load``); ``runner`` decides what runs where;
``report`` turns the samples into one table, a JSON file and a latency plot.
"""
