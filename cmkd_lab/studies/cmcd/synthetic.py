"""CMCD on synthetic pairs with a modality-distance knob (04_cmcd).

The data (:func:`~cmkd_lab.datasets.synthetic.cmcd_modalities`): a class latent seen by the
source through one fixed random nonlinear map, and by the target through another, mixed with a
share ``alpha`` of nuisance that the source never sees. Larger ``alpha``, larger modality distance.

Two studies, both through :func:`~.pipeline.run_transfers`:

- ``cmcd_synthetic``: every method at every ``alpha`` of ``alphas``, with ``n_paired`` (M) paired
  and ``n_labeled`` (m) labeled samples; the method table at ``alpha``, and target error against
  the estimated modality distance within each ``alpha`` (α moves both);
- ``cmcd_sweep``: at ``alpha``, each M of ``paired_sweep`` (m fixed), then each m of
  ``labeled_sweep`` (M fixed).

The claims (:mod:`.analysis`): CMD and CMC beat the best baseline by 1–3 points (Sketchy top-1:
CMD 72.61, CMC 73.24 vs 71.33); the paper argues that the modality distance drives the target
error, and the kit measures that link, which goes beyond the paper. The checked exercise
answers are in :mod:`.exercises`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import plotly.graph_objects as go

from ...analysis.results import summarize
from ...app.notebook import NotebookParameters
from ...datasets import load
from ...models import ModelSpec
from ...report import figures
from ..runner import StudyRun, StudyRunner
from .pipeline import METHODS, Stages, run_transfers, transfers_from_splits


@dataclass(frozen=True)
class CMCDParameters(Stages, NotebookParameters):
    """Synthetic CMCD: the α sweep (method table and distance vs error) and the M and m sweeps."""

    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    alpha: float = 0.25  # the method table's and the M/m sweeps' modality mix
    n_paired: int = 400  # M: paired, unlabeled samples to distil on
    n_labeled: int = 20  # m: labeled target samples to probe and fine-tune on
    paired_sweep: tuple[int, ...] = (50, 200, 800)
    labeled_sweep: tuple[int, ...] = (8, 40, 160)
    sweeps: bool = True  # False: the α study only
    n_runs: int | None = None
    n_samples: int = 3000  # per seed, before the train/val/test split
    ssl_epochs: int | None = None
    distill_epochs: int | None = None
    head_epochs: int | None = None
    hidden: int = 64
    # the other stage settings (learning rates, batch size, temperatures, CMD's queue): see Stages

    notebook: ClassVar[str] = "04_cmcd"
    profile_defaults: ClassVar = {
        # 4 seeds: the fewest over which the claims' cluster bootstrap gives an interval
        "quick": {"n_runs": 4, "ssl_epochs": 15, "distill_epochs": 30, "head_epochs": 100},
        "full": {"n_runs": 10, "ssl_epochs": 30, "distill_epochs": 60, "head_epochs": 150},
    }

    def __post_init__(self):
        for value in (*self.alphas, self.alpha):
            if not 0 <= value <= 1:
                raise ValueError(f"alpha values lie in [0, 1], got {value}")
        if self.alpha not in self.alphas:
            raise ValueError(
                f"alpha = {self.alpha} must be one of alphas {list(self.alphas)}: the method table reads it there"
            )

    def net(self) -> ModelSpec:
        return ModelSpec("mlp", hidden=(self.hidden,))


def transfers(p: CMCDParameters, alpha: float, n_paired: int, n_labeled: int, settings: dict) -> list:
    """One transfer per seed: the seed's split of the seed's own draw of the data at ``alpha``, so
    no two runs share a sample (the source is the same at every alpha, so the SSL teachers are
    shared across alphas)."""
    splits = {
        seed: load("cmcd_modalities", alpha=alpha, seed=seed, n_samples=p.n_samples).split(seed)
        for seed in range(p.n_runs)
    }
    return transfers_from_splits(
        splits,
        "source",
        "target",
        n_paired=n_paired,
        n_labeled=n_labeled,
        settings={"alpha": alpha, "n_paired": n_paired, "n_labeled": n_labeled, **settings},
    )


def n_classes(p: CMCDParameters) -> int:
    """How many classes the data holds (its chance accuracy is one over that)."""
    return load("cmcd_modalities", alpha=p.alpha, seed=0, n_samples=p.n_samples).n_classes


def run(p: CMCDParameters, progress: bool | None = None, methods: Sequence[str] = METHODS) -> StudyRun:
    """The α study (``cmcd_synthetic``), then (``p.sweeps``) the M and m sweeps (``cmcd_sweep``),
    of every method of ``methods``.

    Parameters
    ----------
    p : CMCDParameters
        The notebook's parameters (scale, stages, the α values and the sweeps).
    progress : bool or None
        Progress bars of every fit (``None``: the engine's default).
    methods : sequence of str
        Of :data:`~.pipeline.METHODS`.

    Returns
    -------
    StudyRun
        Tidy rows (settings ``alpha``, ``n_paired``, ``n_labeled``, ``stage``, plus ``swept`` in
        the sweeps; metrics ``test_acc``, ``tv_lower_bound``, ``mmd``, one row per seed), the log
        of every fit of both studies, and the fits.
    """
    net = p.net()
    alpha_study = StudyRunner("cmcd_synthetic", progress=progress)
    alpha_tasks = [t for a in p.alphas for t in transfers(p, a, p.n_paired, p.n_labeled, {})]
    run_transfers(alpha_study, alpha_tasks, source_net=net, target_net=net, stages=p, methods=methods)
    if not p.sweeps:
        return alpha_study.result()
    sweep_study = StudyRunner("cmcd_sweep", progress=progress)
    sweep_tasks = [t for n in p.paired_sweep for t in transfers(p, p.alpha, n, p.n_labeled, {"swept": "M"})] + [
        t for n in p.labeled_sweep for t in transfers(p, p.alpha, p.n_paired, n, {"swept": "m"})
    ]
    run_transfers(sweep_study, sweep_tasks, source_net=net, target_net=net, stages=p, methods=methods)
    return StudyRun.concat([alpha_study.result(), sweep_study.result()])


def variant_study(
    p: CMCDParameters,
    changes: Mapping[str, Mapping],
    *,
    method: str = "cmd",
    progress: bool | None = False,
) -> StudyRun:
    """``method`` under variants of the distillation and head settings (study ``cmcd_variants``),
    at ``p.alpha`` with ``p.n_paired`` and ``p.n_labeled``; every variant distils from the same
    SSL teachers, so differences are paired by seed.

    Parameters
    ----------
    p : CMCDParameters
        The setting every variant starts from.
    changes : mapping of str to mapping
        A variant's name → the settings it changes (``{}``: ``p`` itself); only settings after
        stage 1 may change (see :data:`~.pipeline.SSL_SETTINGS`).
    method : str
        One of :data:`~.pipeline.METHODS`.
    progress : bool or None
        Progress bars of every fit.

    Returns
    -------
    StudyRun
        The rows of :func:`~.pipeline.run_transfers`, each with its ``variant``; the log and fits.
    """
    runner = StudyRunner("cmcd_variants", progress=progress)
    run_transfers(
        runner,
        transfers(p, p.alpha, p.n_paired, p.n_labeled, {}),
        source_net=p.net(),
        target_net=p.net(),
        stages=p,
        methods=(method,),
        variants={name: p.replace(**change) for name, change in changes.items()},
    )
    return runner.result()


def variant_accuracy(table: pd.DataFrame, stage: str = "probe") -> pd.DataFrame:
    """Test accuracy (%) at ``stage`` of a :func:`variant_study`'s table.

    Parameters
    ----------
    table : pandas.DataFrame
        The table of a :func:`variant_study` run.
    stage : str
        ``"probe"`` or ``"finetune"``.

    Returns
    -------
    pandas.DataFrame
        One row per seed, one column per variant (in the order the variants ran).
    """
    acc = table[(table["metric"] == "test_acc") & (table["stage"] == stage)]
    return 100 * acc.pivot_table(index="seed", columns="variant", values="value")[list(dict.fromkeys(acc["variant"]))]


EXPLORE_SCALE = {
    "n_runs": 1,
    "n_samples": 1000,
    "ssl_epochs": 6,
    "distill_epochs": 12,
    "head_epochs": 50,
    "sweeps": False,
}


def explore_figure(p: CMCDParameters, alpha: float, n_paired: int, n_labeled: int, temperature: float) -> go.Figure:
    """The Explore callback: one seed at a small scale (``EXPLORE_SCALE``) with new knobs; every
    method's accuracy per stage. ``temperature`` is CMC's and CMD's student temperature (CMD's
    teacher temperature keeps its ratio to it)."""
    ratio = p.cmd_teacher_temperature / p.cmd_student_temperature
    changed = p.replace(
        alphas=(alpha,),
        alpha=alpha,
        n_paired=n_paired,
        n_labeled=n_labeled,
        cmc_temperature=temperature,
        cmd_student_temperature=temperature,
        cmd_teacher_temperature=ratio * temperature,
        **EXPLORE_SCALE,
    )
    table = run(changed, progress=False).table
    acc = table[table["metric"] == "test_acc"]
    summary = summarize(acc, by=["method", "stage"])
    fig = figures.grouped_bars(
        summary,
        x="method",
        color="stage",
        title=(
            f"α = {alpha:.2f}, M = {n_paired}, m = {n_labeled}, temperature = {temperature:g} (one seed, small scale)"
        ),
        x_title="method",
    )
    return fig
