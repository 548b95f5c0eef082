"""DisCoM-KD's study (06_discom_kd): the synthetic set with its ablations, then real sets.

- ``discom_synthetic`` and ``discom_ablation``: :func:`~cmkd_lab.datasets.synthetic.discom_modalities`
  (shared, specific and irrelevant latents per modality), every method and every ablation;
- ``discom_real``: each item of ``real``, ``"dataset:mod1,mod2,..."`` (or ``"dataset"`` for all
  its modalities), any registered dataset, every method. Nets follow each modality's shape (an
  MLP for vectors, a 1-D CNN for (channels, time), a 2-D CNN for images).

Rows carry ``dataset`` and ``modality`` (plus ``alpha`` and ``teacher_modality`` for the KD
students); see :mod:`.pipeline` for the methods and metrics.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import plotly.graph_objects as go

from ...analysis.results import summarize
from ...app.notebook import NotebookParameters
from ...datasets import DATASETS, load
from ...models import ModelSpec
from .. import real_data
from ..runner import StudyRun, StudyRunner, Task
from . import pipeline
from .pipeline import Protocol

SYNTHETIC = "discom_modalities"
STUDIES = ("discom_synthetic", "discom_ablation", "discom_real")


@dataclass(frozen=True)
class DisCoMParameters(Protocol, NotebookParameters):
    """DisCoM-KD against its KD baselines, its ablations, and the released code's modality targets."""

    n_splits: int | None = None
    epochs: int | None = None
    synthetic: bool = True  # the synthetic study and the ablations
    n_samples: int = 1200  # synthetic samples, before the 70/10/20 split
    n_modalities: int = 2  # synthetic modalities a, b, …
    hidden: int = 64  # the MLP width of the synthetic modalities' nets
    real: tuple[str, ...] | None = None  # "dataset:mod1,mod2,..." or "dataset" (all its modalities)
    # the protocol's other settings (lr, batch size, width, loss weights, GRL scale, targets, KD): see Protocol

    notebook: ClassVar[str] = "06_discom_kd"
    profile_defaults: ClassVar = {
        "quick": {"n_splits": 3, "epochs": 25, "real": ("segment:colour,shape",)},
        # watch (1-D CNNs on ~3,300 windows) is left out of the full default to keep it within
        # 5 minutes on 2 cores (it alone takes about 10): -p real "['watch:accel,gyro']"
        "full": {"n_splits": 5, "epochs": 40, "real": ("mfeat:pixels,fourier,zernike", "segment:colour,shape")},
    }
    choices: ClassVar = {"modality_targets": pipeline.MODALITY_TARGETS}

    def __post_init__(self):
        self.check()
        for name, _ in parse_real(self.real or ()):
            check_splittable(name)
        if self.n_modalities < 2:
            raise ValueError(f"n_modalities must be >= 2, got {self.n_modalities}")
        if self.n_splits is not None and self.n_splits < 1:
            raise ValueError(f"n_splits must be >= 1, got {self.n_splits}")

    def synthetic_net(self) -> ModelSpec:
        return ModelSpec("mlp", hidden=(self.hidden,))


def parse_real(items) -> list[tuple[str, tuple[str, ...] | None]]:
    """``"dataset:mod1,mod2"`` items as (dataset, modalities); ``"dataset"`` alone means all of
    its modalities (None). Any registered dataset is accepted; an unknown one is an error that
    lists them."""
    parsed = []
    for item in items:
        name, _, rest = item.partition(":")
        modalities = tuple(m.strip() for m in rest.split(",")) if rest else None
        if not name or (modalities is not None and (len(modalities) < 2 or "" in modalities)):
            raise ValueError(
                f"real: {item!r} is not 'dataset' or 'dataset:mod1,mod2[,...]' with two or more modalities, "
                "e.g. 'segment:colour,shape'"
            )
        DATASETS.get(name)  # an unknown name raises, listing the registered datasets
        parsed.append((name, modalities))
    return parsed


def split_sizes(n_samples: int) -> tuple[int, int, int]:
    """The (train, validation, test) rows of :func:`.pipeline.make_tasks`'s split of ``n_samples``
    samples without groups: test first, then validation from the rest, each held-out part
    ``ceil(fraction · rows)`` as scikit-learn rounds it."""
    test = math.ceil(pipeline.TEST_FRACTION * n_samples)
    val = math.ceil(pipeline.VAL_FRACTION / (1 - pipeline.TEST_FRACTION) * (n_samples - test))
    return n_samples - test - val, val, test


def check_splittable(name: str) -> None:
    """Refuse dataset ``name`` when its stratified split cannot give every part a sample of every
    class (scikit-learn would stop inside the kernel), naming the fewest samples that can. A
    dataset with groups (split into group folds, which check their classes themselves) or not on
    disk (its loader says how to get it) is left alone."""
    info = DATASETS.info(name)
    if info["is_available"] is not None and not info["is_available"]():
        return
    data = load(name)
    sizes = split_sizes(len(data))
    n_present = len(np.unique(data.labels.numpy()))  # scikit-learn stratifies over the classes present
    if data.groups is not None or min(sizes) >= n_present:
        return
    needed = next(n for n in itertools.count(len(data)) if min(split_sizes(n)) >= n_present)
    raise ValueError(
        f"real: dataset {name!r} has {len(data)} samples of {n_present} classes; its stratified "
        f"split has {sizes[0]}, {sizes[1]} and {sizes[2]} rows (train, validation, test), and each "
        f"part needs a sample of every class: DisCoM-KD needs at least {needed} samples of "
        f"{n_present} classes"
    )


def synthetic_tasks(p: DisCoMParameters) -> tuple[list[Task], list[str]]:
    """One task per split seed s: split s of the synthetic set drawn with seed s, so no two splits
    share a sample."""
    pools = [
        load(SYNTHETIC, seed=seed, n_samples=p.n_samples, n_modalities=p.n_modalities) for seed in range(p.n_splits)
    ]
    modalities = pools[0].modality_names
    return [pipeline.make_task(pool, modalities, seed, SYNTHETIC) for seed, pool in enumerate(pools)], modalities


def real_tasks(p: DisCoMParameters) -> list[tuple[list[Task], list[str], dict[str, ModelSpec]]]:
    """Per item of ``p.real``: its tasks, modalities and nets. Every dataset loads (and every
    modality is checked) before anything trains."""
    found = []
    for name, modalities in parse_real(p.real or ()):
        data = load(name)
        modalities = list(modalities or data.modality_names)
        if len(modalities) < 2:
            raise ValueError(f"dataset {name!r} has one modality, {modalities}; DisCoM-KD needs two or more")
        nets = {
            m: real_data.net_for(data, m, name) for m in modalities
        }  # unknown modalities raise, naming the valid ones
        found.append((pipeline.make_tasks(data, modalities, p.n_splits, name), modalities, nets))
    return found


def run(p: DisCoMParameters, progress: bool | None = None) -> StudyRun:
    """The synthetic study with its ablations (``p.synthetic``), then every real set.

    Parameters
    ----------
    p : DisCoMParameters
        The notebook's parameters (protocol, scale, the real sets).
    progress : bool or None
        Progress bars of every fit (``None``: the engine's default).

    Returns
    -------
    StudyRun
        Tidy rows of studies ``discom_synthetic``, ``discom_ablation`` and ``discom_real`` (see
        :func:`~.pipeline.run_dataset`), the log (every fit, and each real split's record) and
        the fits.
    """
    real = real_tasks(p)
    tasks = [t for group, _, _ in real for t in group]
    real_data.note_small_test_sets(tasks)
    synthetic = StudyRunner("discom_synthetic", progress=progress)
    if p.synthetic:
        group, modalities = synthetic_tasks(p)
        nets = {m: p.synthetic_net() for m in modalities}
        pipeline.run_dataset(synthetic, group, modalities, nets, p, ablation_study="discom_ablation")
    real_sets = StudyRunner("discom_real", progress=progress)
    for group, modalities, nets in real:
        pipeline.run_dataset(real_sets, group, modalities, nets, p)
    run = StudyRun.concat([synthetic.result(), real_sets.result()])
    run.log.splits += real_data.split_records(tasks)
    return run


EXPLORE_SCALE = {"n_splits": 1, "epochs": 15, "real": (), "synthetic": True}


def explore_figure(
    p: DisCoMParameters,
    cl_weight: float,
    aux_weight: float,
    mod_weight: float,
    adv_weight: float,
    orth_weight: float,
    grl_scale: float,
) -> go.Figure:
    """The Explore callback: DisCoM alone on one synthetic split at a small scale
    (``EXPLORE_SCALE``) with new loss weights and GRL scale; each modality's test weighted F1
    and the domain accuracies on s and u."""
    changed = p.replace(
        cl_weight=cl_weight,
        aux_weight=aux_weight,
        mod_weight=mod_weight,
        adv_weight=adv_weight,
        orth_weight=orth_weight,
        grl_scale=grl_scale,
        **EXPLORE_SCALE,
    )
    group, modalities = synthetic_tasks(changed)
    runner = StudyRunner("discom_synthetic", progress=False)
    nets = {m: changed.synthetic_net() for m in modalities}
    pipeline.run_dataset(runner, group, modalities, nets, changed, methods=("discom",))
    table = runner.result().table
    summary = summarize(table, by=["metric", "modality"])
    fig = go.Figure(
        go.Bar(
            x=[f"{metric} · {modality}" for metric, modality in zip(summary["metric"], summary["modality"])],
            y=(100 * summary["mean"]).tolist(),
        )
    )
    fig.update_layout(
        template="plotly_white",
        yaxis_title="%",
        title=(
            f"weights cl {cl_weight:g}, aux {aux_weight:g}, mod {mod_weight:g}, adv {adv_weight:g}, orth "
            f"{orth_weight:g}; "
            f"GRL λ {grl_scale:g} (one split, small scale)"
        ),
    )
    return fig


def discom_variants(p: DisCoMParameters, variants: Mapping[str, Mapping], progress: bool | None = False) -> StudyRun:
    """DisCoM alone on the synthetic set (``p.n_splits`` splits), one fit per variant (study
    ``discom_variants``).

    Parameters
    ----------
    p : DisCoMParameters
        The setting every variant starts from.
    variants : mapping of str to mapping
        A variant's name → the settings it changes (``{}``: ``p``'s own): any protocol setting
        (e.g. ``grl_scale``, ``modality_targets``) or ``orthogonality="absolute"``
        (:class:`~.pipeline.AbsoluteCosineDisCoM`).
    progress : bool or None
        Progress bars of every fit.

    Returns
    -------
    StudyRun
        Tidy rows, ``method`` the variant's name: each modality's test weighted F1 and accuracy,
        the domain accuracies on s and u, the mean cosines ``cos_ds`` and ``cos_du`` and the
        trained discriminator's accuracy (see :func:`~.pipeline.run_variant`); one fit per variant
        in the log, under its name.
    """
    group, modalities = synthetic_tasks(p)
    st = pipeline.stack_tasks(group, modalities)
    specs = pipeline.backbone_specs(st, {m: p.synthetic_net() for m in modalities})
    runner = StudyRunner("discom_variants", progress=progress)
    for name, changes in variants.items():
        changes = dict(changes)
        orthogonality = changes.pop("orthogonality", "signed")
        protocol = p.replace(**changes)
        pipeline.run_variant(runner, st, protocol.discom(specs, orthogonality=orthogonality), protocol, name=name)
    return runner.result()


def embedding_features(p: DisCoMParameters, run: StudyRun) -> dict[str, tuple]:
    """The synthetic study's DisCoM on its first split's test samples: per modality (s, d, u)
    ``(N, width)``. The split is rebuilt from its seed; the model is the study's first DisCoM fit
    (its first copy: the full model on split 0)."""
    fits = [
        f
        for f, r in zip(run.artifacts.fits["discom"], [f for f in run.log.fits if f["method"] == "discom"])
        if r["study"] == "discom_synthetic"
    ]
    if not fits:
        raise ValueError("the run has no synthetic DisCoM fit (synthetic=False)")
    group, modalities = synthetic_tasks(p)
    stacked = pipeline.stack_tasks(group, modalities)
    blocks = fits[0].record["n_models"] // len(group)  # the fit's copies: the full model's block, then the ablations'
    features = pipeline.discom_features(fits[0].system, fits[0], stacked.discom_data("test", blocks))
    n = stacked.test_sizes[0]
    return {m: tuple(part[0, :n].numpy() for part in parts) for m, parts in features.items()}
