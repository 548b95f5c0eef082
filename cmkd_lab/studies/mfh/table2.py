"""MFH Table 2 and Algorithm 1: regular vs modality-general teachers (papers.md §1, case study B).

Run r of a setting (seed s = base_seed + 3r) draws the regular teacher's training set from s,
the test set from s + 1 and a fresh training set from s + 2, on which the students and the
modality-general (MG) teachers train. An MG teacher keeps xs2 channels of x_a, chosen
``random``, ``gt`` (the true shared ones) or ``alg1`` (:func:`cmkd_lab.analysis.saliency.algorithm1` on
the regular teacher's draw). The MG teachers and their KD students are variants of one
:func:`~cmkd_lab.studies.runner.run_teacher_student` call (every kind of model is one batched fit);
the regular teacher trains on its own draw, so its students are fits of their own.

``rng="official"`` replays ``gauss/main_modify_gamma.py`` run for run (its order of draws:
:mod:`cmkd_lab.studies.official`): run r has seed s = base_seed + r; its train set, test set and
fresh draw, the random channel choice, the initial weights of every net (regular teacher, No-KD,
regular KD, Algorithm 1's joint pair, each MG teacher and its KD student) and every permutation
of Algorithm 1 are the script's. The script repeats the regular teacher, No-KD and regular KD in
each teacher mode's loop; the kit trains them once, with the nets of the ``alg1`` loop when
``alg1`` is among ``teacher_modes`` (the loop whose MG teacher Table 2 reports), else of the
``random``/``gt`` loop. The script's regular KD is the released, swapped call:
``regular_kd_as_released=True`` gives its numbers. What still differs is float rounding: the
kit's batched fits, and Algorithm 1's scores computed in closed form
(:func:`cmkd_lab.analysis.saliency.permutation_saliency`), round differently from one-model forward
passes, so channels whose scores tie to float precision could rank differently (none did against
the script's loop, up to the full profile). An MG teacher there keeps its channels in the
script's order, packed into the first xs2 input slots with the rest zero (a ``Linear(xs2, 2)``
as a ``Linear(50, 2)``), where the kit's own mode zeroes the dropped channels in place.

Rows (study ``mfh_table2``; settings ``gamma``, ``teacher_mode``): ``test_acc`` of teacher, no_kd
(mode "regular") and kd; ``channel_recovery`` of the random and alg1 choices (method teacher);
``alg1_score`` per ``channel`` (method teacher, mode alg1): Algorithm 1's min-max scores.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Sequence

import pandas as pd
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from ...analysis.results import RunLog, mean_std_cells, summarize, tidy_rows
from ...analysis.saliency import ALGORITHM1_CONFIG, algorithm1
from ...datasets import Splits
from ...datasets.synthetic import RNG_MODES, mfh_table2, mfh_table2_draws
from ...engine import Stack, TrainConfig
from ...models import ModelSpec
from ...report import figures
from ..official import TABLE2_CHANNELS, mfh_table2_nets
from ..runner import StudyRun, Task, Variant, classifier_run, fit_run, given_init, run_teacher_student, stack_split
from .common import (OFFICIAL_EPOCHS, SyntheticKDParameters, kd_loss, paper_comparison, random_mask, ratios_table,
                     top_mask)

STUDY = "mfh_table2"
TEACHER_MODES = ("random", "gt", "alg1")
PAPER_TOLERANCE = 3.0  # points: values read off the paper's table; std over runs is 1-2.5 points


@dataclass(frozen=True)
class Table2Parameters(SyntheticKDParameters):
    """MFH Table 2: regular vs modality-general teachers (xs1 decisive a-only dims, xs2 shared)."""

    alg1_epochs: int | None = None
    alg1_repeats: int | None = None
    xs1: int = 10
    xs2_values: tuple[int, ...] = (5, 10, 15, 20, 25, 30)
    base_seed: int = 42
    teacher_modes: tuple[str, ...] = TEACHER_MODES
    regular_kd_as_released: bool = False
    rng: str = "kit"  # "official": data, nets and permutations drawn as gauss/main_modify_gamma.py draws them

    notebook: ClassVar[str] = "02_mfh_table2"
    profile_defaults: ClassVar = {
        "quick": {"n_runs": 10, "epochs": 300, "alg1_epochs": 300, "alg1_repeats": 20},
        "full": {"n_runs": 10, "epochs": OFFICIAL_EPOCHS, "alg1_epochs": OFFICIAL_EPOCHS, "alg1_repeats": 100},
    }
    choices: ClassVar = {**SyntheticKDParameters.choices, "teacher_modes": TEACHER_MODES, "rng": RNG_MODES}


class OfficialRun(NamedTuple):
    """What run s of the official script draws besides its data and the nets its tasks give
    (``rng="official"``): per teacher mode the initial state dicts of the MG teacher (its
    ``Linear(xs2, 2)`` packed into a ``Linear(50, 2)``) and its KD student; the ``random`` loop's
    channel choice ``(xs2,)``; Algorithm 1's permutations of x_a ``(repeats, channels, n_train)``
    (``None`` without ``alg1``)."""

    modality_general: dict[str, dict[str, dict[str, torch.Tensor]]]
    random_channels: torch.Tensor
    alg1_permutations: torch.Tensor | None


class Table2Tasks(NamedTuple):
    """Per (xs2, run): the regular teacher's task, the students' task (the fresh draw, the same
    test set) and, with ``rng="official"``, the run's :class:`OfficialRun` (else ``None``). With
    ``rng="official"`` the tasks give the script's initial weights (``Task.init``): the teacher
    task its regular teacher (``"teacher"``) and, with ``alg1``, Algorithm 1's pair
    (``"alg1_teacher"``, ``"alg1_student"``); the student task its ``"no_kd"`` and ``"kd"``."""

    teacher: list[Task]
    student: list[Task]
    official: list[OfficialRun] | None


def make_tasks(p: Table2Parameters) -> Table2Tasks:
    """The tasks of every (xs2, run): train s, test s + 1, fresh draw s + 2 with s = base_seed + 3r;
    with ``rng="official"`` the script's draws of run s = base_seed + r (module docstring)."""
    teacher_tasks, student_tasks, official = [], [], []
    for xs2 in p.xs2_values:
        for r in range(p.n_runs):
            seed = p.base_seed + (r if p.rng == "official" else 3 * r)
            draws = mfh_table2_draws(xs2, seed, xs1=p.xs1, n_train=p.n_train, n_test=p.n_test, rng=p.rng)
            teacher_task = Task(draws.splits, seed, {"gamma": draws.shares["gamma"]})
            student_task = Task(Splits(draws.fresh, None, draws.splits.test), seed, {"gamma": draws.shares["gamma"]})
            if p.rng == "official":
                teacher_init, student_init, run = _official_run(p, xs2, seed, draws.generator)
                teacher_task = dataclasses.replace(teacher_task, init=teacher_init)
                student_task = dataclasses.replace(student_task, init=student_init)
                official.append(run)
            teacher_tasks.append(teacher_task)
            student_tasks.append(student_task)
    return Table2Tasks(teacher_tasks, student_tasks, official if p.rng == "official" else None)


def _official_run(p: Table2Parameters, xs2: int, seed: int, generator) -> tuple[dict, dict, OfficialRun]:
    """The initial weights of run ``seed``'s teacher task and student task, and the rest of what
    the script draws (:class:`OfficialRun`); ``generator`` is NumPy's after the fresh draw."""
    with_alg1, loops = "alg1" in p.teacher_modes, {}
    if with_alg1:
        loops["alg1"] = mfh_table2_nets(seed, xs2, p.n_train, algorithm1_repeats=p.alg1_repeats)
    if not with_alg1 or set(p.teacher_modes) - {"alg1"}:  # the random and gt loops draw the same nets
        loops["random/gt"] = mfh_table2_nets(seed, xs2, p.n_train)
    regular = loops["alg1" if with_alg1 else "random/gt"]
    teacher_init = {"teacher": regular["teacher"]}
    if with_alg1:
        teacher_init.update(alg1_teacher=loops["alg1"]["alg1_teacher"], alg1_student=loops["alg1"]["alg1_student"])
    modality_general = {}
    for mode in p.teacher_modes:
        nets = loops["alg1" if mode == "alg1" else "random/gt"]
        weight = nets["mg_teacher"]["head.weight"]  # (2, xs2): the packed slots; the others hold zeros
        packed = {**nets["mg_teacher"], "head.weight": F.pad(weight, (0, TABLE2_CHANNELS - xs2))}
        modality_general[mode] = {"teacher": packed, "kd": nets["mg_kd"]}
    random_channels = torch.as_tensor(generator.randint(0, TABLE2_CHANNELS, xs2))
    run = OfficialRun(modality_general, random_channels, loops["alg1"]["alg1_permutations"] if with_alg1 else None)
    return teacher_init, {"no_kd": regular["no_kd"], "kd": regular["kd"]}, run


class ChannelChoice(NamedTuple):
    """The channels of x_a an MG teacher keeps, per task ``(tasks, slots)``, one slot per channel
    of x_a: slot j of the teacher's input holds channel ``channels[m, j]`` where ``kept[m, j]`` is
    set, zero elsewhere."""

    channels: torch.Tensor
    kept: torch.Tensor

    @classmethod
    def in_place(cls, mask: torch.Tensor) -> "ChannelChoice":
        """The kit's: the channels ``mask`` sets stay in their slots, the others are zeroed."""
        return cls(torch.arange(mask.shape[1]).expand_as(mask), mask)

    @classmethod
    def in_order(cls, ordered: Sequence[torch.Tensor], counts: torch.Tensor, n_channels: int) -> "ChannelChoice":
        """The official script's ``x_a[:, channels]``: per task m the first ``counts[m]`` channels
        of ``ordered[m]`` (at least that many, at most ``n_channels``), in that order, then zeros."""
        channels = torch.stack([F.pad(order, (0, n_channels - len(order))) for order in ordered])
        return cls(channels, torch.arange(n_channels) < counts.unsqueeze(1))

    def mask(self) -> torch.Tensor:
        """Which channels of x_a are kept, ``(tasks, channels)``."""
        return (F.one_hot(self.channels, self.channels.shape[1]).bool() & self.kept.unsqueeze(-1)).any(1)

    def variant(self, tasks: Sequence[Task]) -> Variant:
        """The teacher variant that feeds each task's MG teacher its slots."""
        row = {id(task): i for i, task in enumerate(tasks)}

        def keep(x: torch.Tensor, group: Sequence[Task]) -> torch.Tensor:
            rows = [row[id(task)] for task in group]
            slots = x.gather(-1, self.channels[rows].unsqueeze(1).expand_as(x))
            return slots * self.kept[rows].unsqueeze(1).to(x.dtype)

        return keep


def _shared_channels(p: Table2Parameters, n_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per task of :func:`make_tasks`: its number of shared channels xs2, and which channels of
    x_a they are (the first xs2), ``(tasks, channels)``."""
    shared = torch.tensor(p.xs2_values).repeat_interleave(p.n_runs)
    return shared, torch.arange(n_channels).unsqueeze(0) < shared.unsqueeze(1)


def _algorithm1(p: Table2Parameters, tasks: Table2Tasks, spec: ModelSpec, progress: bool | None):
    """Algorithm 1 (``alg1_epochs``, ``alg1_repeats``) on the regular teacher's draw of every
    task; with ``rng="official"`` from the script's joint nets and permutations."""
    x_a, y_a = stack_split(tasks.teacher, "train", "a")
    x_b, _ = stack_split(tasks.teacher, "train", "b")
    config = dataclasses.replace(ALGORITHM1_CONFIG, epochs=p.alg1_epochs, device=p.device)
    replayed = {}
    if tasks.official is not None:
        pair = {module: given_init(tasks.teacher, f"alg1_{module}", spec)["student"]
                for module in ("teacher", "student")}
        replayed = dict(init=pair, permutations=torch.stack([run.alg1_permutations for run in tasks.official], dim=1))
    return algorithm1(spec, x_a, spec, x_b, y_a, seeds=[t.seed for t in tasks.teacher], layer="input",
                      repeats=p.alg1_repeats, config=config, progress=progress, **replayed)


def _student_init(tasks: Sequence[Task], method: str, spec: ModelSpec) -> Stack | None:
    """The initial nets of ``method`` that ``tasks`` give (the official script's), or ``None``."""
    given = given_init(tasks, method, spec)
    return None if given is None else given["student"]


def algorithm1_recovery(p: Table2Parameters) -> pd.DataFrame:
    """Algorithm 1 alone, as :func:`run` runs it (``alg1_epochs``, ``alg1_repeats``): per γ, its
    channel recovery (the share of the xs2 true shared channels among the xs2 it ranks highest,
    mean over runs) and the chance level xs2 / channels (a random choice's expected recovery).
    The joint fit's warnings about heads ending at chance are silenced: with very few epochs an
    untrained pair is what this measures."""
    tasks = make_tasks(p.replace(teacher_modes=("alg1",)))
    n_channels = tasks.teacher[0].splits.train.shape("a")[0]
    shared, truth = _shared_channels(p, n_channels)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ended at chance")
        saliency = _algorithm1(p, tasks, ModelSpec("linear", (n_channels,), 2), progress=False)
    recovery = (top_mask(saliency.scores, shared) & truth).sum(1) / shared
    per_run = pd.DataFrame({"gamma": [t.settings["gamma"] for t in tasks.teacher], "recovery": recovery.numpy(),
                            "chance": (shared / n_channels).numpy()})
    return per_run.groupby("gamma", as_index=False).mean().round(3)


def run(p: Table2Parameters, progress: bool | None = None) -> StudyRun:
    """Regular teacher, No-KD, regular KD, Algorithm 1's joint pair, all MG teachers and all MG
    KD students; every kind of model is one batched fit over settings, runs (and modes; with
    ``rng="official"`` each mode's MG nets start from their own loop's draws, one fit per mode)."""
    tasks = make_tasks(p)
    teacher_tasks, student_tasks = tasks.teacher, tasks.student
    seeds = [t.seed for t in teacher_tasks]
    settings = lambda mode: [{**t.settings, "teacher_mode": mode} for t in teacher_tasks]  # noqa: E731
    config, kd = TrainConfig(epochs=p.epochs, lr=p.lr, device=p.device), kd_loss(p)
    runner = dict(study=STUDY, teacher_modality="a", student_modality="b", teacher_config=config,
                  variant_column="teacher_mode", progress=progress)
    regular = run_teacher_student(teacher_tasks, include=("teacher",), variants={"regular": None}, **runner)
    xa, y = stack_split(student_tasks, "train", "a")
    xb, _ = stack_split(student_tasks, "train", "b")
    n_channels = xa.shape[-1]
    spec = ModelSpec("linear", (n_channels,), 2)
    on_fresh_draw = dict(test=stack_split(student_tasks, "test", "b"), settings=settings("regular"), seeds=seeds,
                         config=config, progress=progress)
    # The released code calls its regular-KD student with the modalities swapped (student on
    # x_a, teacher fed x_b; a bug); the paper means student on x_b, teacher on x_a.
    student_x, teacher_x = (xa, xb) if p.regular_kd_as_released else (xb, xa)
    runs = [
        regular,
        classifier_run(STUDY, "kd", spec, (student_x, y), init=_student_init(student_tasks, "kd", spec), loss=kd,
                       teacher=regular.artifacts.fits["teacher"][0].modules["student"], x_teacher=teacher_x,
                       **on_fresh_draw),
    ]
    shared, truth = _shared_channels(p, n_channels)
    choices, recovery = {}, []
    for mode in p.teacher_modes:
        if mode == "gt":
            choices[mode] = ChannelChoice.in_place(truth)  # the first xs2 channels: in place is in order
            continue
        if mode == "random":
            choices[mode] = (
                ChannelChoice.in_place(random_mask(seeds, shared, n_channels)) if tasks.official is None
                else ChannelChoice.in_order([run.random_channels for run in tasks.official], shared, n_channels))
        else:  # Algorithm 1 on the regular teacher's draw
            saliency = _algorithm1(p, tasks, spec, progress)
            ranked = saliency.scores.argsort(dim=-1, descending=True, stable=True)
            choices[mode] = (ChannelChoice.in_place(top_mask(saliency.scores, shared)) if tasks.official is None
                             else ChannelChoice.in_order(list(ranked), shared, n_channels))
            scores = [row for c in range(n_channels) for row in tidy_rows(
                STUDY, "teacher", [{**s, "channel": c} for s in settings(mode)], seeds, "alg1_score",
                saliency.scores[:, c].numpy())]
            runs.append(fit_run(STUDY, "algorithm1", saliency.joint, scores))
        recovery += tidy_rows(STUDY, "teacher", settings(mode), seeds, "channel_recovery",
                              ((choices[mode].mask() & truth).sum(1) / shared).numpy())
    if recovery:
        runs.append(StudyRun(pd.DataFrame(recovery), RunLog()))
    if tasks.official is None:
        fits = {tuple(choices): student_tasks} if choices else {}
    else:
        fits = {(mode,): [dataclasses.replace(task, init={**run.modality_general[mode], "no_kd": task.init["no_kd"]})
                          for task, run in zip(student_tasks, tasks.official)] for mode in choices}
    if not fits:
        runs.append(classifier_run(STUDY, "no_kd", spec, (xb, y), init=_student_init(student_tasks, "no_kd", spec),
                                   **on_fresh_draw))
    for index, (modes, fit_tasks) in enumerate(fits.items()):
        # the first MG KD fit also trains the No-KD students (on the same fresh draw): one fit fewer
        mg = run_teacher_student(fit_tasks, include=("teacher", "no_kd") if index == 0 else ("teacher",),
                                 losses={"kd": kd}, variants={mode: choices[mode].variant(fit_tasks) for mode in modes},
                                 **runner)
        mg.table.loc[mg.table["method"] == "no_kd", "teacher_mode"] = "regular"
        runs.append(mg)
    return StudyRun.concat(runs)


# Published Table 2 (percent): γ of the regular teacher → regular teacher, MG teacher, No-KD,
# regular KD, MG KD. The paper's MG column is compared with the kit's alg1 teacher.
_TABLE2_PUBLISHED = {
    0.25: (89.70, 64.84, 59.29, 59.46, 61.01),
    0.33: (89.41, 68.42, 61.98, 62.16, 64.50),
    0.50: (89.62, 73.41, 67.64, 67.86, 70.25),
    0.66: (89.82, 77.98, 73.48, 73.60, 75.43),
    0.75: (89.70, 79.41, 76.46, 76.53, 77.70),
}
_TABLE2_COLUMNS = [("teacher", "regular"), ("teacher", "alg1"), ("no_kd", "regular"), ("kd", "regular"), ("kd", "alg1")]
TABLE2_PAPER = pd.DataFrame(
    [{"gamma": g, "method": method, "teacher_mode": mode, "paper": v}
     for g, values in _TABLE2_PUBLISHED.items() for (method, mode), v in zip(_TABLE2_COLUMNS, values)]
)


MODEL_NAMES = {("teacher", "regular"): "regular teacher", ("teacher", "alg1"): "MG teacher (Algorithm 1)",
               ("no_kd", "regular"): "No-KD student", ("kd", "regular"): "regular KD student",
               ("kd", "alg1"): "MG KD student (Algorithm 1)"}


def paper_table(table: pd.DataFrame) -> pd.DataFrame:
    """Table 2 beside the kit: the paper prints γ to two digits (0.66 for 2/3), so settings are
    matched on γ truncated to two digits; a paper row without a kit setting shows NaN. Each row
    is labelled by its setting ("γ = 0.33") and model, then the evidence (claims.csv reads the
    labels)."""
    compared = paper_comparison(table, TABLE2_PAPER, ["gamma", "method", "teacher_mode"], PAPER_TOLERANCE,
                                match=lambda gamma: math.floor(gamma * 100 + 1e-9) / 100)
    models = [MODEL_NAMES[key] for key in zip(compared["method"], compared["teacher_mode"])]
    labels = pd.DataFrame({"setting": [f"γ = {g:.2f}" for g in compared["gamma"]], "model": models})
    return pd.concat([labels, compared.drop(columns=["gamma", "method", "teacher_mode"])], axis=1)


def _labelled(table: pd.DataFrame, separator: str, names: dict | None = None) -> pd.DataFrame:
    """Test accuracy rows with a ``label``: method and teacher mode ("no_kd" alone)."""
    acc = table[table["metric"] == "test_acc"].copy()
    methods = acc["method"].map(names) if names else acc["method"]
    acc["label"] = (methods + separator + acc["teacher_mode"]).where(acc["method"] != "no_kd", methods)
    return acc


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """Table 2 in the paper's layout: one row per γ, mean ± std (percent) per teacher and student."""
    summary = summarize(_labelled(table, " · ", {"teacher": "teacher", "no_kd": "No-KD", "kd": "KD"}), by=["gamma", "label"])
    summary["cell"] = mean_std_cells(summary)
    wide = summary.pivot(index="gamma", columns="label", values="cell")
    wide.index = wide.index.map(lambda g: round(float(g), 3))
    return wide


def accuracy_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    summary = summarize(_labelled(table, " · "), by=["label", "gamma"])
    return figures.metric_vs_knob(summary, x="gamma", color="label", title=title, x_title="γ of the regular teacher")


def recovery_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean channel recovery per γ (rows) and channel choice (columns)."""
    recovery = summarize(table[table["metric"] == "channel_recovery"], by=["teacher_mode", "gamma"])
    return recovery.pivot(index="gamma", columns="teacher_mode", values="mean").round(3)


def scores_figure(table: pd.DataFrame, seed: int) -> go.Figure:
    """Algorithm 1's score of every input channel of x_a per setting, for the run of ``seed``."""
    scores = table[(table["metric"] == "alg1_score") & (table["seed"] == seed)]
    heat = scores.pivot(index="gamma", columns="channel", values="value")
    heat.index = [f"γ = {g:.2f}" for g in heat.index]
    return figures.heatmap(heat, title=f"Algorithm 1 scores per input channel of x_a (seed {seed}; true shared = first xs2)",
                           x_title="channel of x_a", y_title="setting", colorbar_title="score", colorscale="Viridis",
                           text_format=".1f")


def mean_accuracy(table: pd.DataFrame) -> pd.Series:
    """Mean test accuracy (percent) per (method, teacher mode), over settings and runs."""
    acc = summarize(table[table["metric"] == "test_acc"], by=["method", "teacher_mode"])
    return 100 * acc.set_index(["method", "teacher_mode"])["mean"]


def headline(table: pd.DataFrame) -> str:
    """Per channel choice: the MG teacher and its KD student against the regular ones (points)."""
    acc = mean_accuracy(table)
    gain = lambda method, mode: acc[(method, mode)] - acc[(method, "regular")]  # noqa: E731
    return "\n".join(f"{mode:>6}: MG teacher {gain('teacher', mode):+.2f} points vs regular; "
                     f"its KD student {gain('kd', mode):+.2f} points vs regular KD"
                     for mode in TEACHER_MODES if ("teacher", mode) in acc.index)


def ratios(p: Table2Parameters) -> pd.DataFrame:
    return ratios_table("xs2", p.xs2_values, mfh_table2, xs1=p.xs1)


def explore(p: Table2Parameters, xs2: int, n_train: int, temperature: float, kd_weight: float) -> go.Figure:
    """The Explore callback: Table 2 at one xs2 with every teacher mode, ``explore_runs`` seeds."""
    changed = p.replace(xs2_values=(xs2,), n_train=n_train, temperature=temperature, kd_weight=kd_weight,
                        n_runs=p.explore_runs, epochs=p.explore_epochs, alg1_epochs=p.explore_epochs,
                        alg1_repeats=min(p.alg1_repeats, 20))
    acc = run(changed, progress=False).table
    acc = acc[acc["metric"] == "test_acc"]
    summary = summarize(acc, by=["teacher_mode", "method"])
    return figures.grouped_bars(summary, x="teacher_mode", x_title="teacher",
                                title=f"xs2 = {xs2} (γ = {acc['gamma'].iloc[0]:.2f}), n_train = {n_train}, "
                                      f"T = {temperature}, KD weight = {kd_weight}")
