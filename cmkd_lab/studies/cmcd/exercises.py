"""The CMCD notebooks' checked exercise answers (04_cmcd, 04_cmcd_real): seeded calls registered
with :func:`cmkd_lab.app.course.exercise`. Each runs on the CPU at a small fixed scale, on seeds
0 to ``n_runs`` − 1; the answers that read one run share it (the runs are memoised)."""

from __future__ import annotations

import functools

import pandas as pd

from ...app import course
from . import analysis, real, synthetic

SYNTHETIC, REAL = "04_cmcd", "04_cmcd_real"
# the synthetic exercises' scale: a few seconds per run at one thread
SYNTHETIC_SCALE = {"n_samples": 1000, "ssl_epochs": 5, "sweeps": False, "device": "cpu"}
# the real-pair exercises' scale: 300 paired samples, short stages
REAL_SCALE = {"n_paired": 300, "ssl_epochs": 5, "distill_epochs": 10, "head_epochs": 40, "device": "cpu"}
ANCHOR_SETTING = {"alphas": (0.25,), "alpha": 0.25, "n_labeled": 20, "distill_epochs": 40, "head_epochs": 60}
ALPHA_STUDY = {"alphas": (0.0, 0.5, 1.0), "alpha": 0.5, "distill_epochs": 10, "head_epochs": 40}
ALPHA_METHODS = ("cmd", "cmc", "l2", "finetune_only")
GAIN_METHODS = ("cmd", "no_distill", "finetune_only")  # CMD and the random target encoder at each stage


def cmd_probe_change(n_paired: int = 50, n_runs: int = 2, **change) -> pd.DataFrame:
    """CMD's probe accuracy (%) per seed at α = 0.25 with m = 20 labels and M = ``n_paired``:
    with the default settings, with ``change`` (setting → value, e.g. ``queue_size=256``), and
    their difference; every variant distils from the same SSL teachers."""
    return _cmd_probe_change(n_paired, n_runs, tuple(sorted(change.items()))).copy()


@functools.cache
def _cmd_probe_change(n_paired: int, n_runs: int, change: tuple) -> pd.DataFrame:
    setting = synthetic.CMCDParameters.create(n_paired=n_paired, n_runs=n_runs, **ANCHOR_SETTING, **SYNTHETIC_SCALE)
    variants = synthetic.variant_study(setting, {"defaults": {}, "changed": dict(change)})
    probe = synthetic.variant_accuracy(variants.table)
    return probe.assign(**{"changed − defaults": probe["changed"] - probe["defaults"]})


@course.exercise(
    SYNTHETIC,
    "queue_gain",
    what="CMD probe accuracy, queue of anchors − batch anchors, M = 50 (points)",
    other={"queue_size": 64},
)
def queue_gain(queue_size: int = 256, n_paired: int = 50, n_runs: int = 2) -> float:
    return float(cmd_probe_change(n_paired, n_runs, queue_size=queue_size)["changed − defaults"].mean())


@course.exercise(
    SYNTHETIC,
    "warmer_teacher_gain",
    what="CMD probe accuracy, warmer teacher − teacher at 0.05 (points)",
    other={"teacher_temperature": 0.2},
)
def warmer_teacher_gain(teacher_temperature: float = 0.1, n_paired: int = 50, n_runs: int = 2) -> float:
    change = cmd_probe_change(n_paired, n_runs, cmd_teacher_temperature=teacher_temperature)
    return float(change["changed − defaults"].mean())


@functools.cache
def alpha_study(n_paired: int = 200, n_labeled: int = 160, n_runs: int = 2) -> pd.DataFrame:
    """The tidy table of CMD, CMC, L2 and fine-tuning from scratch at α = 0, 0.5 and 1, with M =
    ``n_paired`` and m = ``n_labeled`` (short stages). Cached: do not modify it."""
    setting = synthetic.CMCDParameters.create(
        n_paired=n_paired, n_labeled=n_labeled, n_runs=n_runs, **ALPHA_STUDY, **SYNTHETIC_SCALE
    )
    return synthetic.run(setting, progress=False, methods=ALPHA_METHODS).table


@course.exercise(SYNTHETIC, "mmd_orders_alpha_better_by", what="ρ(MMD², α) − ρ(TV bound, α)", other={"n_paired": 50})
def mmd_orders_alpha_better_by(n_paired: int = 200, n_labeled: int = 160, n_runs: int = 2) -> float:
    order = analysis.distance_knob_correlations(analysis.distance_points(alpha_study(n_paired, n_labeled, n_runs)))
    return float(order.loc["mmd", "rho"] - order.loc["tv_lower_bound", "rho"])


@course.exercise(
    SYNTHETIC, "tv_bound_at_alpha", what="mean TV lower bound of the distilled encoders at α = 0", other={"alpha": 0.5}
)
def tv_bound_at_alpha(alpha: float = 0.0, n_paired: int = 200, n_labeled: int = 160, n_runs: int = 2) -> float:
    points = analysis.distance_points(alpha_study(n_paired, n_labeled, n_runs))
    return float(points.loc[points["alpha"] == alpha, "tv_lower_bound"].mean())


@course.exercise(
    SYNTHETIC,
    "scratch_lead",
    what="largest over α of fine-tuning from scratch − the best distilled encoder, m = 160 (points)",
    other={"n_labeled": 40},
)
def scratch_lead(n_paired: int = 200, n_labeled: int = 160, n_runs: int = 2) -> float:
    return float(analysis.scratch_gap(alpha_study(n_paired, n_labeled, n_runs), ["alpha"]).max())


@functools.cache
def label_count_gain(few: int = 5, many: int = 50, n_runs: int = 2) -> pd.DataFrame:
    """:func:`.analysis.distillation_gain` of CMD on segment's colour → shape with ``few`` and
    ``many`` labels per class (rows), from the same SSL teachers. Cached: do not modify it."""
    setting = real.CMCDRealParameters.create(datasets=["segment"], n_runs=n_runs, **REAL_SCALE)
    run = real.run(setting, progress=False, methods=GAIN_METHODS, labeled_per_class=[few, many])
    return analysis.distillation_gain(run.table, ["labeled_per_class"])


def _gain_shrink(stage: str, few: int, many: int, n_runs: int) -> float:
    gain = label_count_gain(few, many, n_runs)
    return float(gain.loc[few, ("gain", stage)] - gain.loc[many, ("gain", stage)])


@course.exercise(
    REAL,
    "probe_gain_shrinks_by",
    what="CMD's probe gain over a random encoder, 5 − 50 labels per class (points)",
    other={"many": 20},
)
def probe_gain_shrinks_by(few: int = 5, many: int = 50, n_runs: int = 2) -> float:
    return _gain_shrink("probe", few, many, n_runs)


@course.exercise(
    REAL,
    "finetune_gain_shrinks_by",
    what="CMD's fine-tuned gain over fine-tuning from scratch, 5 − 50 labels per class (points)",
    other={"many": 20},
)
def finetune_gain_shrinks_by(few: int = 5, many: int = 50, n_runs: int = 2) -> float:
    return _gain_shrink("finetune", few, many, n_runs)


@functools.cache
def source_gain(source: str = "morphological", target: str = "pixels", n_runs: int = 2) -> pd.DataFrame:
    """:func:`.analysis.distillation_gain` of CMD from mfeat's ``source`` view into its ``target``
    view (5 labels per class). Cached: do not modify it."""
    setting = real.CMCDRealParameters.create(
        datasets=["mfeat"], pairs=[f"mfeat:{source}>{target}"], n_runs=n_runs, **REAL_SCALE
    )
    return analysis.distillation_gain(real.run(setting, progress=False, methods=GAIN_METHODS).table, ["dataset"])


@course.exercise(
    REAL,
    "weak_source_probe_gain",
    what="CMD from morphological, probe gain over a random pixel encoder (points)",
    other={"source": "zernike"},
)
def weak_source_probe_gain(source: str = "morphological", target: str = "pixels", n_runs: int = 2) -> float:
    return float(source_gain(source, target, n_runs).loc["mfeat", ("gain", "probe")])


@course.exercise(
    REAL,
    "weak_source_finetune_gain",
    what="CMD from morphological, fine-tuned gain over fine-tuning from scratch (points)",
    other={"source": "zernike"},
)
def weak_source_finetune_gain(source: str = "morphological", target: str = "pixels", n_runs: int = 2) -> float:
    return float(source_gain(source, target, n_runs).loc["mfeat", ("gain", "finetune")])
