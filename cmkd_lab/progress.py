"""Progress bars for long loops: tqdm, quiet under CI or when CMKD_LAB_QUIET is set."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet_by_default() -> bool:
    return bool(os.environ.get("CI")) or bool(os.environ.get("CMKD_LAB_QUIET"))


def progress_bar(iterable: Iterable[T], description: str, enabled: bool | None = None, **options) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar; ``enabled=None`` shows it unless running quietly."""
    if enabled is None:
        enabled = not quiet_by_default()
    return tqdm(iterable, desc=description, disable=not enabled, leave=False, **options)
