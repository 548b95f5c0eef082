"""MFH's real-data protocol (the RAVDESS study, papers.md §1) on real paired datasets.

Any registered dataset of real paired data can be studied by name (the kit's own, downloaded ones,
the user's). Its teacher → student modalities come from ``pairs`` ("dataset:teacher>student"), else
from the kit's defaults for its own datasets, else they are its first two modalities; the nets come
from the defaults, else from each modality's shape (vector: MLP, (C, T): 1-D CNN, (C, H, W): 2-D CNN).

Per dataset and group of equal-shape seeds: Algorithm 1 (joint fit and permutation saliency of
the teacher's ``embedding`` channels); the teacher in four modes, ``regular`` (whole) or with
``fraction`` of its channels replaced by their training mean, chosen ``random``,
``least_salient`` (the MG teacher: the most modality-general channels stay) or
``most_salient``; No-KD; one KD student per mode, all modes in one batched fit. The teacher is
Algorithm 1's jointly trained teacher net, so every mode edits the very channels that were scored.

Rows (study ``mfh_real``; settings ``dataset``, ``n_classes``, ``teacher_mode``): ``test_acc`` of
teacher, no_kd (mode "regular") and kd. :func:`comparisons` judges what MFH says (:data:`CLAIMS`)
on per-seed differences, per dataset; :func:`teacher_probe` runs Algorithm 1 and the teacher modes
alone (no students), with how far Algorithm 1's scores follow the teacher's own reliance on each
channel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import plotly.graph_objects as go
import torch

from ...analysis import claims
from ...analysis.metrics import accuracy
from ...analysis.results import RunLog, mean_std_cells, summarize, tidy_rows
from ...analysis.saliency import Saliency, algorithm1, channel_means, mean_replacement, permutation_saliency
from ...app import course
from ...app.notebook import NotebookParameters
from ...datasets import PairedDataset, load, real_dataset_names, standardise
from ...engine import TrainConfig
from ...losses import KD_REDUCTIONS, Distiller
from ...report import figures
from ..real_data import net_for, note_small_test_sets, parse_pairs, split_records, train_config
from ..runner import ModelSpec, StudyRun, StudyRunner, Task, groups_of_equal_shape, repeat_models, stack_split
from .common import at_chance, kd_loss, paired_difference, random_mask, top_mask

STUDY = "mfh_real"
DEFAULT_LR = 0.01  # SGD with momentum 0.9, as Algorithm 1 in MFH's code


@dataclass(frozen=True)
class RealPair:
    """A real paired dataset as teacher modality → student modality, with the nets to use and
    the learning rate of every fit (unless ``RealParameters.lr`` gives one)."""

    teacher_modality: str
    student_modality: str
    teacher: ModelSpec
    student: ModelSpec
    lr: float = DEFAULT_LR


# The kit's own datasets: the pair, nets and learning rate this study was tuned on, so that the
# quick profile (150 epochs) trains no model that ends at chance (the engine's warning: train
# accuracy ≤ 1/K + 5 points, or a cross-entropy at ln K). segment: at lr 0.01 with a 64-channel
# teacher the jointly trained colour teacher stays soft and the pure-KD students of its edited
# copies end at chance; a 128-channel teacher at lr 0.05 trains every model above it (10 seeds).
# mfeat: the most-salient teacher keeps the least modality-general channels, so its student sits
# near chance by design (what a teacher with little the student can see passes on); lr 0.02 keeps
# the quick profile's 5 seeds above it (at 10 seeds, 2 of mfeat's 40 KD students still ended there).
DEFAULT_PAIRS = {
    "mfeat": RealPair("pixels", "zernike", ModelSpec("mlp", hidden=(128,)), ModelSpec("mlp", hidden=(64,)), lr=0.02),
    "watch": RealPair("accel", "gyro", ModelSpec("cnn1d", hidden=(16, 32)), ModelSpec("cnn1d", hidden=(16, 32))),
    "segment": RealPair("colour", "shape", ModelSpec("mlp", hidden=(128,)), ModelSpec("mlp", hidden=(32,)), lr=0.05),
}
TEACHER_MODES = ("regular", "random", "least_salient", "most_salient")


@dataclass(frozen=True)
class RealParameters(NotebookParameters):
    """The RAVDESS protocol on real paired data: Algorithm 1 on the teacher's penultimate layer,
    then ``fraction`` of its channels replaced by their training mean."""

    datasets: tuple[str, ...] = ("mfeat", "segment")
    pairs: tuple[str, ...] = ()  # "dataset:teacher>student", e.g. "mine:accel>gyro"
    n_runs: int | None = None
    epochs: int | None = None
    alg1_repeats: int | None = None
    fraction: float = 0.75
    lr: float | None = None  # None: each dataset's tuned rate (DEFAULT_PAIRS), else DEFAULT_LR
    momentum: float = 0.9
    temperature: float = 1.0
    kd_ce_weight: float = 0.0
    kd_weight: float = 1.0
    reduction: str = "batchmean"
    standardize: bool = True  # z-score each modality with training-split statistics
    batch_size: int | None = None  # None: full batch up to 2048 training samples, else mini-batches (see real_data)

    notebook: ClassVar[str] = "02_mfh_real"
    profile_defaults: ClassVar = {
        "quick": {"n_runs": 5, "epochs": 150, "alg1_repeats": 5},
        "full": {"n_runs": 10, "epochs": 500, "alg1_repeats": 100},
    }
    choices: ClassVar = {"datasets": real_dataset_names, "reduction": KD_REDUCTIONS}

    def __post_init__(self):
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {self.fraction}")
        self.chosen_pairs()

    def chosen_pairs(self) -> dict[str, tuple[str, str]]:
        """``pairs`` as dataset → (teacher modality, student modality)."""
        return {name: (teacher, student) for name, teacher, student in parse_pairs(self.pairs, self.datasets)}


def choose_pair(p: RealParameters, name: str, data: PairedDataset) -> RealPair:
    """Dataset ``name``'s pair: from ``p.pairs``, else the defaults, else its first two modalities;
    nets from the defaults, else by the shape of each modality's samples."""
    chosen = p.chosen_pairs()
    if name in chosen:
        teacher, student = chosen[name]
    elif name in DEFAULT_PAIRS:
        return DEFAULT_PAIRS[name]
    elif len(data.modality_names) >= 2:
        teacher, student = data.modality_names[:2]
    else:
        raise ValueError(
            f"dataset {name!r} has one modality, {data.modality_names}; MFH needs a teacher's and a student's"
        )

    return RealPair(teacher, student, net_for(data, teacher, name), net_for(data, student, name))


def make_tasks(p: RealParameters, name: str) -> tuple[RealPair, list[Task]]:
    """Dataset ``name``'s pair and one task per seed: the seeded split, both modalities
    standardised; settings ``dataset`` and ``n_classes`` (the chance level is 1 / n_classes)."""
    data = load(name)
    pair = choose_pair(p, name, data)
    modalities = [pair.teacher_modality, pair.student_modality]
    settings = {"dataset": name, "n_classes": data.n_classes}
    return pair, [
        Task(standardise(data.split(seed), modalities, scale=p.standardize), seed, settings) for seed in range(p.n_runs)
    ]


def _mode_masks(scores: torch.Tensor, fraction: float, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
    """Channels to replace per teacher mode, ``(M, channels)``."""
    n_models, n_channels = scores.shape
    k = torch.full((n_models,), int(round(fraction * n_channels)))
    return {
        "regular": torch.zeros(n_models, n_channels, dtype=torch.bool),
        "random": random_mask(seeds, k, n_channels),
        "least_salient": top_mask(-scores, k),  # keeps the most modality-general channels: the MG teacher
        "most_salient": top_mask(scores, k),
    }


def _groups(p: RealParameters) -> list[tuple[RealPair, list[Task], TrainConfig]]:
    """Per dataset of ``p``, each group of equal-shape seeds with its pair and training config
    (every dataset loads before anything trains)."""
    studied = [make_tasks(p, name) for name in p.datasets]
    note_small_test_sets([task for _, tasks in studied for task in tasks])
    return [
        (
            pair,
            group,
            train_config(
                group,
                epochs=p.epochs,
                batch_size=p.batch_size,
                lr=pair.lr if p.lr is None else p.lr,
                optimizer="sgd",
                momentum=p.momentum,
                device=p.device,
            ),
        )
        for pair, tasks in studied
        for group in groups_of_equal_shape(tasks, [pair.teacher_modality, pair.student_modality])
    ]


def _runner(groups: list[tuple[RealPair, list[Task], TrainConfig]], progress: bool | None) -> StudyRunner:
    """The study's runner, its log holding the record of every split of ``groups``."""
    return StudyRunner(
        STUDY, progress=progress, log=RunLog(splits=split_records([task for _, tasks, _ in groups for task in tasks]))
    )


@dataclass
class _Teachers:
    """Algorithm 1 on one group of seeds and its teacher in every mode."""

    saliency: Saliency
    edits: dict[str, dict]  # teacher mode -> the teacher's edit


def _group_data(pair: RealPair, tasks: list[Task]):
    """Stacked train/test inputs of both modalities, the labels, and the nets' specs."""
    (xa, y), (xa_test, y_test) = (stack_split(tasks, part, pair.teacher_modality) for part in ("train", "test"))
    xb, xb_test = (stack_split(tasks, part, pair.student_modality)[0] for part in ("train", "test"))
    n_classes = max(part.n_classes for t in tasks for part in t.splits.parts().values())
    specs = pair.teacher.sized(tuple(xa.shape[2:]), n_classes), pair.student.sized(tuple(xb.shape[2:]), n_classes)
    return (xa, xb, y), (xa_test, xb_test, y_test), specs


def _mode_settings(tasks: list[Task], mode: str) -> list[dict]:
    return [{**t.settings, "teacher_mode": mode} for t in tasks]


def _teachers(
    runner: StudyRunner, pair: RealPair, tasks: list[Task], config: TrainConfig, p: RealParameters
) -> _Teachers:
    """Algorithm 1 (joint fit, saliency of the teacher's ``embedding`` channels; logged as
    ``algorithm1`` with the dataset) and the teacher in every mode, each mode's test accuracy a
    row of ``runner``."""
    seeds = [t.seed for t in tasks]
    (xa, xb, y), (xa_test, _, y_test), (teacher_spec, student_spec) = _group_data(pair, tasks)
    saliency = algorithm1(
        teacher_spec,
        xa,
        student_spec,
        xb,
        y,
        seeds=seeds,
        layer="embedding",
        repeats=p.alg1_repeats,
        config=config,
        progress=runner.progress,
    )
    runner.record("algorithm1", saliency.joint, dataset=tasks[0].settings["dataset"])
    teacher, masks = saliency.joint.modules["teacher"], _mode_masks(saliency.scores, p.fraction, seeds)
    means = channel_means(teacher, xa, "embedding")
    edits = {mode: {"embedding": mean_replacement(mask, means)} for mode, mask in masks.items()}
    runner.add(
        [
            row
            for mode, edit in edits.items()
            for row in tidy_rows(
                runner.study,
                "teacher",
                _mode_settings(tasks, mode),
                seeds,
                "test_acc",
                accuracy(teacher(xa_test, edits=edit)[0], y_test).numpy(),
            )
        ]
    )
    return _Teachers(saliency, edits)


def run(p: RealParameters, progress: bool | None = None) -> StudyRun:
    """The protocol on every dataset of ``p``, one group of equal-shape seeds at a time: per
    group, Algorithm 1 (its jointly trained teacher edited in every mode), No-KD, and one KD
    student per teacher mode (all modes in one fit).

    Parameters
    ----------
    p : RealParameters
        The notebook's parameters (datasets, pairs, scale, KD settings).
    progress : bool or None
        Progress bars of every fit (``None``: the engine's default).

    Returns
    -------
    StudyRun
        Tidy rows of study ``mfh_real`` (settings ``dataset``, ``n_classes``, ``teacher_mode``;
        ``test_acc`` of teacher, no_kd and kd, one row per seed), the log (per group the fits
        ``algorithm1``, ``no_kd``, ``kd`` tagged with the dataset, and each split's record) and
        the fits.
    """
    kd = kd_loss(p, ce_weight=p.kd_ce_weight)
    groups = _groups(p)
    runner = _runner(groups, progress)
    for pair, group, config in groups:
        _run_group(runner, pair, group, config, kd, p)
    return runner.result()


def teacher_probe(p: RealParameters, progress: bool | None = None) -> StudyRun:
    """Algorithm 1 and the teacher modes of :func:`run` without any student (a fraction of its cost).

    Parameters
    ----------
    p : RealParameters
        As for :func:`run` (the KD settings are unused).
    progress : bool or None
        Progress bars of every fit.

    Returns
    -------
    StudyRun
        Tidy rows (study ``mfh_real``) per dataset and seed: each mode's teacher ``test_acc``
        (method ``teacher``), and ``reliance_rho`` (method ``algorithm1``): Spearman's ρ, over the
        teacher's ``embedding`` channels, between Algorithm 1's score (teacher/student logit MSE
        with the channel permuted) and the teacher's own reliance on the channel (the same
        permutation score with the teacher in the student's place: how far its logits move). ρ
        near 1 means the "modality-general" channels are mostly the ones the teacher leans on,
        whatever the student sees. The log holds each group's ``algorithm1`` fit and each split's
        record.
    """
    from scipy import stats  # deferred, as in cmkd_lab.analysis.metrics: a slow import

    groups = _groups(p)
    runner = _runner(groups, progress)
    for pair, group, config in groups:
        teachers = _teachers(runner, pair, group, config, p)
        teacher = teachers.saliency.joint.modules["teacher"]
        xa = stack_split(group, "train", pair.teacher_modality)[0]
        reliance = permutation_saliency(
            teacher, xa, teacher, xa, layer="embedding", repeats=p.alg1_repeats, seed=group[0].seed
        )
        rhos = [stats.spearmanr(score, own)[0] for score, own in zip(teachers.saliency.raw.numpy(), reliance.numpy())]
        runner.add(
            tidy_rows(STUDY, "algorithm1", [t.settings for t in group], [t.seed for t in group], "reliance_rho", rhos)
        )
    return runner.result()


def probe_table(probe: pd.DataFrame) -> pd.DataFrame:
    """Per dataset (means over seeds), the points of test accuracy each edited teacher loses
    against the whole (``regular``) one, and ``reliance_rho``.

    Parameters
    ----------
    probe : pandas.DataFrame
        The table of a :func:`teacher_probe` run.

    Returns
    -------
    pandas.DataFrame
        One row per dataset; columns ``random``, ``least_salient``, ``most_salient`` (points
        lost) and ``reliance_rho``, rounded to 2 decimals.
    """
    acc = probe[probe["metric"] == "test_acc"].pivot_table(
        index="dataset", columns="teacher_mode", values="value", sort=False
    )
    lost = 100 * acc[[m for m in TEACHER_MODES if m != "regular"]].rsub(acc["regular"], axis=0)
    rho = probe[probe["metric"] == "reliance_rho"].groupby("dataset", sort=False)["value"].mean()
    return lost.assign(reliance_rho=rho).round(2)


def _run_group(
    runner: StudyRunner,
    pair: RealPair,
    tasks: list[Task],
    config: TrainConfig,
    kd: Distiller,
    p: RealParameters,
) -> None:
    """One group of equal-shape seeds: Algorithm 1 and the teacher modes, No-KD, the KD students."""
    seeds = [t.seed for t in tasks]
    (xa, xb, y), (_, xb_test, y_test), (_, student_spec) = _group_data(pair, tasks)
    teachers = _teachers(runner, pair, tasks, config, p)
    teacher, edits = teachers.saliency.joint.modules["teacher"], teachers.edits
    settings = lambda mode: _mode_settings(tasks, mode)  # noqa: E731
    k, tags = len(edits), {"dataset": tasks[0].settings["dataset"]}
    repeated = lambda x: repeat_models(x, k)  # noqa: E731
    runner.classifier(
        "no_kd", student_spec, (xb, y), (xb_test, y_test), settings("regular"), seeds=seeds, config=config, tags=tags
    )
    runner.classifier(
        "kd",
        student_spec,
        (repeated(xb), repeated(y)),
        (repeated(xb_test), repeated(y_test)),
        [s for mode in edits for s in settings(mode)],
        seeds=seeds * k,
        config=config,
        tags=tags,
        loss=kd,
        teacher_logits=torch.cat([teacher(xa, edits=edit)[0] for edit in edits.values()]),
    )


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (percent) per dataset and teacher mode, teacher and students side by side."""
    acc = table[table["metric"] == "test_acc"]
    summary = summarize(acc, by=["dataset", "teacher_mode", "method"])
    summary["cell"] = mean_std_cells(summary)
    wide = summary.pivot(index=["dataset", "teacher_mode"], columns="method", values="cell")
    order = [m for m in TEACHER_MODES if m in acc["teacher_mode"].unique()]
    return wide.reindex(pd.MultiIndex.from_product([list(dict.fromkeys(acc["dataset"])), order]))[
        ["teacher", "no_kd", "kd"]
    ]


def accuracy_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    acc = table[(table["metric"] == "test_acc") & (table["method"] != "no_kd")].copy()
    acc["setting"] = acc["dataset"] + " · " + acc["teacher_mode"]
    summary = summarize(acc, by=["setting", "method"])
    return figures.grouped_bars(summary, x="setting", x_title="dataset · teacher mode", title=title)


# comparison -> (method, teacher mode) minus (method, teacher mode); No-KD rows carry mode "regular"
COMPARISONS = {
    "MG KD − regular KD": (("kd", "least_salient"), ("kd", "regular")),
    "MG KD − random KD": (("kd", "least_salient"), ("kd", "random")),
    "regular KD − No-KD": (("kd", "regular"), ("no_kd", "regular")),
    "MG KD − No-KD": (("kd", "least_salient"), ("no_kd", "regular")),
}
ONE_POINT = 1.0  # accuracy points: the smallest gain or loss the field reports as one
_PER_SEED = "test accuracy difference, per seed"
# What MFH says of each comparison, stated before the data; judged per dataset, seeds as units.
CLAIMS = {
    "MG KD − regular KD": claims.Claim(
        claim="the MG teacher's KD student beats the regular teacher's",
        source="MFH §5 (RAVDESS, NYU Depth V2)",
        kind="paper",
        quantity=f"MG KD − regular KD {_PER_SEED}",
        unit="points",
        prediction="> 0",
        sesoi=ONE_POINT,
    ),
    "MG KD − random KD": claims.Claim(
        claim="which channels the MG teacher keeps matters: its student beats the random teacher's",
        source="MFH §5, RAVDESS random-removal control (our reading)",
        kind="paper",
        quantity=f"MG KD − random KD {_PER_SEED}",
        unit="points",
        prediction="> 0",
        sesoi=ONE_POINT,
    ),
    "regular KD − No-KD": claims.Claim(
        claim="regular KD gives no gain over No-KD",
        source="MFH §4 (AV-MNIST, NYU Depth V2; secondary)",
        kind="paper",
        quantity=f"regular KD − No-KD {_PER_SEED}",
        unit="points",
        prediction="= 0",
        sesoi=ONE_POINT,
    ),
    "MG KD − No-KD": claims.Claim(
        claim="MG-KD lifts the student above No-KD",
        source="MFH §5 (NYU Depth V2; secondary)",
        kind="paper",
        quantity=f"MG KD − No-KD {_PER_SEED}",
        unit="points",
        prediction="> 0",
        sesoi=ONE_POINT,
    ),
}


def comparisons(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset (the claim's ``setting``), each of :data:`CLAIMS` judged on its comparison's
    per-seed difference (points); a comparison with a model at chance
    (:func:`~cmkd_lab.studies.mfh.common.at_chance`) is not resolved. Returns
    :func:`cmkd_lab.analysis.claims.table` (Holm over all datasets' claims)."""
    keys = lambda model: dict(zip(("method", "teacher_mode"), model))  # noqa: E731
    rows = []
    acc = table[table["metric"] == "test_acc"]
    for name, part in acc.groupby("dataset", sort=False):
        for label, (minuend, subtrahend) in COMPARISONS.items():
            difference = paired_difference(part, keys(minuend), keys(subtrahend), on=["seed"])
            chance = at_chance(part, (minuend, subtrahend))
            rows.append(
                CLAIMS[label].judge(100 * difference["value"], setting=name, at_chance=bool(chance), note=chance)
            )
    return claims.table(rows)


# ----------------------------------------------------------------------------- exercises
@functools.cache
def _probe_summary(fraction: float, n_runs: int, epochs: int, alg1_repeats: int) -> pd.DataFrame:
    p = RealParameters.create(
        datasets=("mfeat", "segment"),
        n_runs=n_runs,
        epochs=epochs,
        alg1_repeats=alg1_repeats,
        fraction=fraction,
        device="cpu",
    )
    return probe_table(teacher_probe(p, progress=False).table)


def probe_summary(fraction: float = 0.5, n_runs: int = 2, epochs: int = 100, alg1_repeats: int = 2) -> pd.DataFrame:
    """The exercises' teacher probe (:func:`probe_table` of :func:`teacher_probe`) on mfeat and
    segment, seeds 0..n_runs − 1, on the CPU; computed once per setting."""
    return _probe_summary(fraction, n_runs, epochs, alg1_repeats).copy()


def _lead(dataset: str, mode: str, **probe) -> float:
    """Points of accuracy the ``mode`` teacher loses beyond the most any other edited mode loses."""
    lost = probe_summary(**probe).loc[dataset]
    return float(lost[mode] - lost[[m for m in TEACHER_MODES if m not in ("regular", mode)]].max())


_PROBE = "(teachers only, 2 seeds, 100 epochs)"


@course.exercise(
    "02_mfh_real",
    "mfeat_most_salient_lead",
    other={"fraction": 0.75},
    what=f"mfeat: points the most_salient teacher loses beyond any other mode, 50 % replaced {_PROBE}",
)
def mfeat_most_salient_lead_exercise(
    fraction: float = 0.5, n_runs: int = 2, epochs: int = 100, alg1_repeats: int = 2
) -> float:
    return _lead("mfeat", "most_salient", fraction=fraction, n_runs=n_runs, epochs=epochs, alg1_repeats=alg1_repeats)


@course.exercise(
    "02_mfh_real",
    "segment_least_salient_lead",
    other={"fraction": 0.75},
    what=f"segment: points the least_salient teacher loses beyond any other mode, 50 % replaced {_PROBE}",
)
def segment_least_salient_lead_exercise(
    fraction: float = 0.5, n_runs: int = 2, epochs: int = 100, alg1_repeats: int = 2
) -> float:
    return _lead("segment", "least_salient", fraction=fraction, n_runs=n_runs, epochs=epochs, alg1_repeats=alg1_repeats)


@course.exercise(
    "02_mfh_real",
    "mfeat_reliance_rho",
    other={"epochs": 30},
    what=f"mfeat: Spearman ρ of Algorithm 1's scores with the teacher's own reliance {_PROBE}",
)
def mfeat_reliance_rho_exercise(
    fraction: float = 0.5, n_runs: int = 2, epochs: int = 100, alg1_repeats: int = 2
) -> float:
    return float(probe_summary(fraction, n_runs, epochs, alg1_repeats).loc["mfeat", "reliance_rho"])


@course.exercise(
    "02_mfh_real",
    "reliance_rho_gap",
    other={"epochs": 30},
    what=f"ρ(Algorithm 1's scores, teacher's reliance) on mfeat minus on segment {_PROBE}",
)
def reliance_rho_gap_exercise(
    fraction: float = 0.5, n_runs: int = 2, epochs: int = 100, alg1_repeats: int = 2
) -> float:
    rho = probe_summary(fraction, n_runs, epochs, alg1_repeats)["reliance_rho"]
    return float(rho["mfeat"] - rho["segment"])
