"""Progress bars for transfers, in the one unit system the CLI uses everywhere: IEC (KiB, MiB, MiB/s).

tqdm's own unit scaling prints SI letters ("MB/s") even when it divides by 1024, so the sizes and the
rate are formatted here with `human_size`, the function every summary and `dfs info` use.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from client.cli_settings import Settings
from client.format import human_size

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {iec}"
BAR_FORMAT_UNKNOWN_TOTAL = "{desc}: {iec}"


class IecBar(tqdm):  # type: ignore[type-arg]
    """A tqdm bar whose counts are bytes, shown as "1.5 MiB / 4.0 MiB, 12.3 MiB/s".

    The first bytes are drawn at once, whatever tqdm's refresh interval, so even a transfer shorter
    than that interval shows its size and rate once before the bar is cleared.
    """

    @property
    def format_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = super().format_dict
        done = human_size(int(d["n"]))
        total = f" / {human_size(int(d['total']))}" if d.get("total") else ""
        rate = d.get("rate")
        if not rate and d["n"] and d.get("elapsed"):  # tqdm's smoothed rate needs two refreshes
            rate = d["n"] / d["elapsed"]
        speed = f", {human_size(int(rate))}/s" if rate else ""
        d["iec"] = f"{done}{total}{speed}"
        return d

    def update(self, n: float | None = 1) -> bool | None:
        first = not self.disable and self.n == 0 and bool(n)
        shown: bool | None = super().update(n)
        if first and not shown:
            self.refresh()
            return True
        return shown


def progress_bar(settings: Settings, total: int | None, label: str) -> IecBar:
    """A bar on stderr when it is a terminal and neither --quiet nor --json is set; else a no-op bar."""
    return IecBar(
        total=total,
        desc=label,
        bar_format=BAR_FORMAT if total else BAR_FORMAT_UNKNOWN_TOTAL,
        file=sys.stderr,
        disable=not settings.show_progress(),
        leave=False,
        dynamic_ncols=True,
    )
