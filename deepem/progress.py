"""Progress of loops over micrographs: a live tqdm bar on a terminal, plain lines in a log.

Under Snakemake (``> {log} 2>&1``) or SLURM, stderr is a file. tqdm would fill it with
carriage-return fragments; instead each refresh becomes its own line, at most one every
``LOG_INTERVAL`` seconds, plus the final one with the count and the rate (``mic/s``).
"""

import sys

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between progress lines in a log file
BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"  # always mic/s, never s/mic


class _Lines:
    """A stream that writes each tqdm refresh as one line (tqdm redraws in place with '\\r').

    A refresh identical to the line before (tqdm redraws the last state on closing) is dropped.
    """

    def __init__(self, stream):
        self.stream = stream
        self.last = None

    def write(self, text):
        text = text.strip("\r\n ")
        if text and text != self.last:
            self.stream.write(text + "\n")
            self.last = text

    def flush(self):
        self.stream.flush()


def progress(iterable, desc, total=None, unit="mic"):
    """``iterable`` wrapped in a tqdm bar named ``desc`` on stderr, counting ``unit`` per second."""
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, unit=unit, bar_format=BAR, file=sys.stderr)
    return tqdm(
        iterable, desc=desc, total=total, unit=unit, bar_format=BAR, file=_Lines(sys.stderr), ascii=True,
        mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL,
    )
