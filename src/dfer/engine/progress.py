"""tqdm progress bars that show throughput in clips/s (only on the main process)."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Throughput:
    """Counts clips and wall time of a loop; ``rate`` = clips/s since ``start()``."""

    def __init__(self):
        self.clips = 0
        self.t0 = time.perf_counter()

    def update(self, n: int) -> None:
        self.clips += n

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def rate(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0


def bar(total: int, desc: str, enabled: bool = True, initial: int = 0) -> tqdm:
    # Logs are files under SLURM/Snakemake: refresh rarely there, live on a terminal.
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled, dynamic_ncols=True,
                mininterval=0.5 if tty else 30.0, leave=True, unit="batch", file=sys.stderr)
