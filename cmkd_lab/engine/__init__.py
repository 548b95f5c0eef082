"""The training engine: one loop for every system, run as M stacked copies.

- :mod:`.trainer`: :func:`fit`, :class:`TrainConfig`, :class:`FitResult` and the system contract
  (:class:`System`, :class:`StepResult`, :class:`Head`);
- :mod:`.schedules`: :class:`Ramp` (a term's warm-up) and :func:`gradient_reversal`;
- :mod:`.stack`: :class:`Stack` (M copies of any module as one computation), :class:`Edit`;
- :mod:`.registry`: the name → object :class:`Registry` that losses, datasets and model kinds use.

The names are loaded on first use: :mod:`cmkd_lab.models` registers its kinds in
:mod:`.registry` while :mod:`.stack` builds models, so importing the whole engine here would
import it in a circle.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "trainer": (
        "fit",
        "TrainConfig",
        "FitResult",
        "System",
        "StepResult",
        "Head",
        "Bound",
        "build_seeded",
        "take_rows",
        "resolve_device",
        "thread_policy",
        "DEVICES",
        "OPTIMIZERS",
        "ROW_MASK",
        "SELECTION_RULES",
    ),
    "schedules": ("Ramp", "gradient_reversal"),
    "stack": ("Stack", "Edit", "broadcast_models"),
    "registry": ("Registry", "check_options"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
