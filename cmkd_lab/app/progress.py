"""Progress on long loops, in one of three modes:

- ``"bar"``: a tqdm text bar on stderr, in a terminal and in a notebook alike. Not tqdm's
  notebook widget: a saved notebook keeps widget bars as references to widget state that is
  gone on reopening ("Error displaying widget: model not found"), while a text bar is a plain
  stream output that survives saving;
- ``"lines"``: plain text lines on stderr, when a loop starts, every ``LINE_EVERY_S`` seconds and
  when it ends. ``python -m cmkd_lab run`` uses them: its kernels' stderr reaches the terminal,
  and the executed notebooks keep a short log rather than widget state;
- ``"off"``.

``$CMKD_LAB_PROGRESS`` chooses the mode; without it, bars unless running quietly (``$CI`` or
``$CMKD_LAB_QUIET`` set), then off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm  # the text bar, never the notebook widget (see the module docstring)

T = TypeVar("T")
ENV_VAR = "CMKD_LAB_PROGRESS"
MODES = ("bar", "lines", "off")
LINE_EVERY_S = 30.0


def quiet_by_default() -> bool:
    return bool(os.environ.get("CI")) or bool(os.environ.get("CMKD_LAB_QUIET"))


def progress_mode(enabled: bool | None = None) -> str:
    """``enabled``: True a bar, False off, None from the environment (see the module docstring)."""
    if enabled is not None:
        return "bar" if enabled else "off"
    mode = os.environ.get(ENV_VAR)
    if mode:
        if mode not in MODES:
            raise ValueError(f"${ENV_VAR} is {mode!r}; choose one of {list(MODES)}")
        return mode
    return "off" if quiet_by_default() else "bar"


def progress_bar(
    iterable: Iterable[T], description: str, enabled: bool | None = None, unit: str = "it", **options
) -> Iterable[T]:
    """``iterable`` with progress shown in the mode :func:`progress_mode` gives."""
    mode = progress_mode(enabled)
    if mode == "lines":
        return progress_lines(iterable, description, unit)
    return tqdm(iterable, desc=description, disable=mode == "off", leave=False, unit=unit, **options)


def progress_lines(
    iterable: Iterable[T], description: str, unit: str = "it", every_s: float = LINE_EVERY_S
) -> Iterator[T]:
    """``iterable``, printing to stderr a line as it starts, every ``every_s`` seconds, and as it ends."""
    total = len(iterable) if hasattr(iterable, "__len__") else None
    of_total = "" if total is None else f"/{total}"
    say = lambda text: print(f"{description}: {text}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"started ({total} {unit}s)" if total is not None else "started")
    started = last = time.perf_counter()
    done = 0
    for done, item in enumerate(iterable, 1):
        yield item
        now = time.perf_counter()
        if now - last >= every_s and done != total:
            say(f"{done}{of_total} after {now - started:.0f} s")
            last = now
    say(f"done, {done}{of_total} in {time.perf_counter() - started:.1f} s")
