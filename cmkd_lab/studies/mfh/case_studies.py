"""MFH's two missing case studies (papers.md §1): "a better teacher, a worse student" (§2) and the
removal-ratio sweep, on the data these machines hold.

**A better teacher, a worse student** (MFH §2: AV-MNIST, a multimodal teacher +7.04 points of
accuracy, its student −0.37; NYU Depth V2, +4.64 mIoU, student −0.22; secondary reports). A
:class:`ViewPair` ``"dataset:A+C>B"`` names a unimodal teacher on view ``A``, a multimodal teacher
on ``A`` plus the added views ``C`` (early fusion: the views flattened and concatenated), and a
student on view ``B``; ``A`` may be ``B`` (form ``own``: the teacher sees the student's own view,
as MFH's RGB teacher for an RGB student, our reading of the paper's cases) or another view (form
``cross``, which needs three views). The pairs of one dataset and student view form a
:class:`TeacherGroup`: every teacher of its pairs is a variant of one
:func:`~cmkd_lab.studies.runner.run_teacher_student` call on the fused union of their views, the
views a teacher does not see held at their training mean, so the unimodal teacher is the same net
on ``A`` alone (a constant input carries nothing and its weights get no gradient), trained in the
same fit as the multimodal one; each teacher distils into the same student on ``B`` (``kd``), with
No-KD beside them.

MFH's explanation per pair comes from Algorithm 1 (:func:`cmkd_lab.analysis.saliency.joint_fit`:
a teacher net on the fused input and a student net on ``B`` trained together), scored per *view*:
each view's channels are permuted across samples as one block (MFH permutes one channel at a
time; a view's information is spread over redundant channels, which one-at-a-time permutation
underrates). For view block V, with t, s the joint pair's logits and t_V the teacher's with V
permuted: Algorithm 1's score ``E‖t_V − s‖² − ‖t − s‖²`` and the teacher's own reliance
``E‖t_V − t‖²``. For a teacher additive over views (t = f_V + rest), score / reliance
= 1 − Cov(f_V, t − s) / Var(f_V): 1 when the student's net follows all that V tells the teacher,
0 when it follows none of it (the decisive information is specific to the teacher's views; our
reading of "how much of it is modality-general"). Rows ``added_mg_share`` (of the added views),
``base_mg_share`` (of view A) and ``added_reliance_share`` (the added views' share of the
teacher's reliance).

The Gaussian generator stands in for MFH's Venn settings: :func:`gaussian_views` splits
``gaussian_venn``'s modality a into ``a_general`` (its 10 decisive dimensions shared with b, and
5 noise) and ``a_specific`` (its 10 decisive dimensions b does not see, and 5 noise); ``b`` has 10
shared and 10 b-specific decisive dimensions and 20 noise. Adding ``a_specific`` to an
``a_general`` teacher adds only a-specific information (MFH predicts no better student: its
Fig. 3), adding ``a_general`` to an ``a_specific`` teacher adds only modality-general information
(MFH predicts a better student); the true added share (0 or 1) checks the Algorithm 1 measure.

**Removal ratio** (MFH §5, VGGSound: the student's accuracy first rises, then falls, as the share
r of the teacher's channels removed, least modality-general first, grows). Per pair
``"dataset:A>B"`` of real vector views: Algorithm 1 on the teacher's input channels (a joint fit on
A and B, per-channel permutation saliency); then a teacher per (order, r) trained on A with
``round(r·channels)`` channels replaced by their training mean, chosen ``least_salient`` (the
least modality-general first, MFH's), ``most_salient`` or ``random`` (nested across r), each
distilled into a student on B with pure KD by default (``removal_kd_ce_weight``; MFH's RAVDESS
removal and 02_mfh_real distil without the labels' cross-entropy): every teacher is a variant of
one ``run_teacher_student`` call (one fit for all teachers, one for all students).

Rows: study ``mfh_better_teacher`` (settings ``dataset``, ``pair``, ``form``, ``n_classes``,
``teacher_input`` ∈ unimodal | multimodal | none, ``teacher_views``; a teacher two pairs share
appears under each) with ``test_acc`` of teacher, no_kd and kd and
the Algorithm 1 rows (method ``algorithm1``); study ``mfh_removal`` (settings ``dataset``,
``pair``, ``n_classes``, ``order`` ∈ none | least_salient | most_salient | random, ``ratio``) with
``test_acc`` of teacher, no_kd and kd. :func:`claims_table` judges what MFH says.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from ...analysis import claims
from ...analysis.results import RunLog, summarize, tidy_rows
from ...analysis.saliency import ALGORITHM1_CONFIG, algorithm1, joint_fit
from ...app import course
from ...app.notebook import NotebookParameters
from ...datasets import PairedDataset, Splits, from_arrays, load, real_dataset_names, standardise
from ...datasets.synthetic import gaussian_venn
from ...engine import Stack, TrainConfig
from ...losses import KD_REDUCTIONS
from ...models import ModelSpec
from ...report import figures
from ..real_data import net_for, split_records, train_config
from ..runner import (
    StudyRun,
    StudyRunner,
    Task,
    groups_of_equal_shape,
    modality_input,
    repeat_models,
    run_teacher_student,
    stack_split,
)
from .common import kd_loss, random_mask, top_mask
from .real import DEFAULT_LR, DEFAULT_PAIRS

TEACHERS_STUDY = "mfh_better_teacher"
REMOVAL_STUDY = "mfh_removal"
GAUSSIAN = "gaussian"
# gaussian_venn's layout: modality a = [shared, a-specific, noise], b = [shared, b-specific, noise]
GAUSSIAN_LAYOUT = {"shared": 10, "a_specific": 10, "b_specific": 10, "a_noise": 10, "b_noise": 20}
GAUSSIAN_VIEWS = ("a_general", "a_specific", "b")
GAUSSIAN_PAIRS = ("gaussian:a_general+a_specific>b", "gaussian:a_specific+a_general>b")
# What the added view of each Gaussian pair holds, by construction: the share of its decisive
# dimensions that b also sees
GAUSSIAN_ADDED_TRUTH = {"a_specific": 0.0, "a_general": 1.0}
# order -> (Algorithm 1's scores (M, channels), seeds, channels to remove per model (M,)) -> mask
REMOVAL_ORDERS = {
    "least_salient": lambda scores, seeds, k: top_mask(-scores, k),  # the least modality-general first: MFH's
    "most_salient": lambda scores, seeds, k: top_mask(scores, k),
    "random": lambda scores, seeds, k: random_mask(seeds, k, scores.shape[1]),  # one order per seed: nested
}
ORDERS = tuple(REMOVAL_ORDERS)
RATIOS = (0.0, 0.25, 0.5, 0.75, 0.9)
ALG1_MODELS = ("linear", "pair")  # Algorithm 1's nets: linear (closed-form saliency), or the pair's own
TEACHER_INPUTS = ("unimodal", "multimodal")
ONE_POINT = 1.0  # accuracy points: the smallest gain or loss the field reports as one

# MFH §2's two cases (papers.md §1, secondary reports): the multimodal teacher's gain over the
# unimodal one and the gain of the student distilled from it, in the paper's metric
PAPER_CASES = pd.DataFrame(
    [
        {"case": "AV-MNIST (paper)", "metric": "accuracy points", "teacher_gain": 7.04, "student_gain": -0.37},
        {"case": "NYU Depth V2 (paper)", "metric": "mIoU points", "teacher_gain": 4.64, "student_gain": -0.22},
    ]
)


# ----------------------------------------------------------------------------- pairs
_PAIR = re.compile(r"([^:>+\s]+):([^:>\s]+)>([^:>+\s]+)")


@dataclass(frozen=True)
class ViewPair:
    """Teacher views → student view of one dataset: ``teacher_views[0]`` is the unimodal teacher's
    view A, the rest the views the multimodal teacher adds (none for a removal pair)."""

    dataset: str
    teacher_views: tuple[str, ...]
    student_view: str

    @classmethod
    def parse(cls, text: str, n_teacher_views: str = "2+") -> ViewPair:
        """``"dataset:A+C>B"`` (``n_teacher_views="2+"``: a unimodal and a multimodal teacher) or
        ``"dataset:A>B"`` (``"1"``: a removal pair)."""
        example = "'mfeat:pixels+fourier>zernike'" if n_teacher_views == "2+" else "'mfeat:pixels>zernike'"
        match = _PAIR.fullmatch(text.strip())
        views = tuple(match[2].split("+")) if match else ()
        ok = bool(match) and all(views) and len(set(views)) == len(views)
        ok = ok and (len(views) >= 2 if n_teacher_views == "2+" else len(views) == 1)
        if not ok:
            shape = "'dataset:A+C>B' (A: the unimodal teacher's view; A+C: the multimodal teacher's, distinct)"
            if n_teacher_views == "1":
                shape = "'dataset:A>B' (one teacher view)"
            raise ValueError(f"{text!r} is not {shape}, e.g. {example}")
        return cls(match[1], views, match[3])

    @property
    def base(self) -> str:
        return self.teacher_views[0]

    @property
    def added(self) -> tuple[str, ...]:
        return self.teacher_views[1:]

    @property
    def form(self) -> str:
        """``own``: the unimodal teacher sees the student's view (MFH's cases); ``cross`` otherwise."""
        return "own" if self.base == self.student_view else "cross"

    @property
    def label(self) -> str:
        added = f" (+{'+'.join(self.added)})" if self.added else ""
        return f"{self.dataset}: {self.base}{added} → {self.student_view}"


def dataset_names() -> list[str]:
    """What a pair may name: the Gaussian generator and every registered real dataset."""
    return [GAUSSIAN, *real_dataset_names()]


@dataclass(frozen=True)
class CaseStudyParameters(NotebookParameters):
    """MFH §2 (unimodal vs multimodal teacher) and the removal-ratio sweep; see the module docstring."""

    pairs: tuple[str, ...] | None = None  # "dataset:A+C>B"; None: the profile's
    removal_pairs: tuple[str, ...] | None = None  # "dataset:A>B" (vector views); None: the profile's
    ratios: tuple[float, ...] = RATIOS
    orders: tuple[str, ...] = ORDERS
    n_runs: int | None = None  # seeds of the real datasets
    epochs: int | None = None
    gaussian_runs: int | None = None
    gaussian_epochs: int | None = None
    alg1_repeats: int | None = None
    alg1_model: str = "linear"
    lr: float | None = None  # None: each dataset's rate (02_mfh_real's: mfeat 0.02, segment 0.05; others 0.01)
    gaussian_lr: float = 0.1  # MFH's Gaussian runs: full-batch SGD at 0.1
    momentum: float = 0.9
    temperature: float = 1.0
    kd_ce_weight: float = 1.0  # §2: CE + KD, as KD is normally run
    removal_kd_ce_weight: float = 0.0  # the removal sweep: pure KD, as MFH's RAVDESS removal (02_mfh_real)
    kd_weight: float = 1.0
    reduction: str = "batchmean"
    standardize: bool = True
    batch_size: int | None = None
    n_train: int = 200  # the Gaussian generator's training samples (MFH's 200)
    n_test: int = 1000

    notebook: ClassVar[str] = "02_mfh_case_studies"
    profile_defaults: ClassVar = {
        "quick": {
            "pairs": (*GAUSSIAN_PAIRS, "segment:shape+colour>shape"),
            "removal_pairs": ("segment:colour>shape",),
            "n_runs": 3,
            "epochs": 100,
            "gaussian_runs": 10,
            "gaussian_epochs": 300,
            "alg1_repeats": 5,
        },
        "full": {
            "pairs": (
                *GAUSSIAN_PAIRS,
                "segment:shape+colour>shape",
                "mfeat:zernike+fourier>zernike",
                "mfeat:zernike+karhunen_loeve>zernike",
                "mfeat:zernike+morphological>zernike",
                "mfeat:fourier+karhunen_loeve>zernike",
                "mfeat:fourier+morphological>zernike",
            ),
            "removal_pairs": ("segment:colour>shape", "mfeat:fourier>zernike"),
            "n_runs": 5,
            "epochs": 150,
            "gaussian_runs": 10,
            "gaussian_epochs": 1000,
            "alg1_repeats": 20,
        },
    }
    choices: ClassVar = {"orders": ORDERS, "alg1_model": ALG1_MODELS, "reduction": KD_REDUCTIONS}

    def __post_init__(self):
        bad = [r for r in self.ratios if not 0 <= r < 1]
        if bad or 0.0 not in self.ratios or len(self.ratios) < 3:
            raise ValueError(
                "ratios must lie in [0, 1), include 0 (the whole teacher) and hold at least 3 values; "
                f"got {self.ratios}"
            )
        for pair in self.teacher_pairs() + self.removal_view_pairs():
            if pair.dataset not in dataset_names():
                raise ValueError(f"pair {pair.label!r}: unknown dataset {pair.dataset!r}; valid: {dataset_names()}")
        if any(pair.dataset == GAUSSIAN for pair in self.removal_view_pairs()):
            raise ValueError("removal_pairs take real datasets; the Gaussian generator has no removal sweep here")

    def teacher_pairs(self) -> list[ViewPair]:
        return [ViewPair.parse(text) for text in self.pairs or ()]

    def removal_view_pairs(self) -> list[ViewPair]:
        return [ViewPair.parse(text, "1") for text in self.removal_pairs or ()]


# ----------------------------------------------------------------------------- data
def gaussian_views(seed: int, n_train: int = 200, n_test: int = 1000) -> Splits:
    """Run ``seed`` of ``gaussian_venn`` (its own hyperplane, train and test draws) with modality
    a split into ``a_general`` (shared decisive dims + half the noise) and ``a_specific``
    (a-specific decisive dims + the other half); ``b`` as drawn."""
    shared, specific, noise = (GAUSSIAN_LAYOUT[k] for k in ("shared", "a_specific", "a_noise"))
    decisive = shared + specific

    def draw(n: int, part: str) -> PairedDataset:
        data = gaussian_venn(n, **GAUSSIAN_LAYOUT, seed=seed, task_seed=seed, part=part)
        a = data["a"].numpy()
        general = np.concatenate([a[:, :shared], a[:, decisive : decisive + noise // 2]], axis=1)
        only_a = np.concatenate([a[:, shared:decisive], a[:, decisive + noise // 2 :]], axis=1)
        views = {"a_general": general, "a_specific": only_a, "b": data["b"].numpy()}
        return from_arrays(views, data.labels.numpy(), name=GAUSSIAN, class_names=data.class_names)

    return Splits(train=draw(n_train, "train"), val=None, test=draw(n_test, "test"))


class _Datasets:
    """Each dataset loaded once per study run."""

    def __init__(self):
        self.loaded: dict[str, PairedDataset] = {}

    def get(self, name: str) -> PairedDataset:
        if name not in self.loaded:
            self.loaded[name] = load(name)
        return self.loaded[name]

    def views(self, name: str) -> list[str]:
        return list(GAUSSIAN_VIEWS) if name == GAUSSIAN else self.get(name).modality_names


def view_tasks(
    dataset: str, views: Sequence[str], p: CaseStudyParameters, datasets: _Datasets | None = None, label: str = ""
) -> list[Task]:
    """One task per seed with ``views``: the Gaussian generator's runs (``gaussian_runs``), or the
    seeded split of a real dataset (``n_runs``) with the views standardised on the training split;
    settings ``dataset`` and ``n_classes``."""
    datasets = datasets or _Datasets()
    views = list(dict.fromkeys(views))
    known = datasets.views(dataset)
    unknown = [v for v in views if v not in known]
    if unknown:
        raise ValueError(f"{label or dataset}: {dataset} has no view(s) {unknown}; its views: {known}")
    if dataset == GAUSSIAN:
        settings = {"dataset": dataset, "n_classes": 2}
        return [Task(gaussian_views(seed, p.n_train, p.n_test), seed, settings) for seed in range(p.gaussian_runs)]
    data = datasets.get(dataset)
    settings = {"dataset": dataset, "n_classes": data.n_classes}
    return [
        Task(standardise(data.split(seed), views, scale=p.standardize), seed, dict(settings))
        for seed in range(p.n_runs)
    ]


@dataclass(frozen=True)
class TeacherGroup:
    """The pairs of one dataset and student view, trained together: every teacher of every pair is a
    variant of one fit on the ``union`` of their views (the views a teacher does not see held at
    their training mean), every KD student a copy in one fit, and Algorithm 1's joint pairs for
    every multimodal teacher one fit."""

    dataset: str
    student_view: str
    pairs: tuple[ViewPair, ...]

    @property
    def union(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for pair in self.pairs for v in pair.teacher_views))

    def ordered(self, views: Sequence[str]) -> tuple[str, ...]:
        """``views`` in the union's order: the name of a teacher variant is ``"+".join`` of it."""
        return tuple(v for v in self.union if v in views)

    def teacher_views(self, pair: ViewPair, teacher_input: str) -> tuple[str, ...]:
        return self.ordered(pair.teacher_views if teacher_input == "multimodal" else (pair.base,))

    def view_sets(self, inputs: Sequence[str] = TEACHER_INPUTS) -> list[tuple[str, ...]]:
        """The distinct teachers' views, in order of first use."""
        return list(dict.fromkeys(self.teacher_views(pair, i) for pair in self.pairs for i in inputs))

    @property
    def label(self) -> str:
        return f"{self.dataset} → {self.student_view}"


def teacher_groups(pairs: Sequence[ViewPair]) -> list[TeacherGroup]:
    """``pairs`` grouped by dataset and student view, in order of first appearance."""
    grouped: dict[tuple[str, str], list[ViewPair]] = {}
    for pair in pairs:
        grouped.setdefault((pair.dataset, pair.student_view), []).append(pair)
    return [TeacherGroup(dataset, student, tuple(members)) for (dataset, student), members in grouped.items()]


def pair_nets(dataset: str, student_view: str, datasets: _Datasets | None = None) -> tuple[ModelSpec, ModelSpec]:
    """(teacher net, student net): linear nets on the Gaussian generator (MFH's); on real data
    02_mfh_real's nets for the dataset (the teacher an MLP, as fused views are flattened), else an
    MLP teacher and a student net from the student view's shape."""
    if dataset == GAUSSIAN:
        return ModelSpec("linear"), ModelSpec("linear")
    default = DEFAULT_PAIRS.get(dataset)
    teacher = default.teacher if default and default.teacher.kind == "mlp" else ModelSpec("mlp", hidden=(128,))
    datasets = datasets or _Datasets()
    student = default.student if default else net_for(datasets.get(dataset), student_view, dataset)
    return teacher, student


def pair_config(dataset: str, tasks: Sequence[Task], p: CaseStudyParameters) -> TrainConfig:
    """How every fit trains: MFH's full-batch SGD at ``gaussian_lr`` on the Gaussian generator; on
    real data SGD with momentum at 02_mfh_real's rate for the dataset (``lr`` overrides it), full
    batch up to 2048 training samples."""
    if dataset == GAUSSIAN:
        return TrainConfig(epochs=p.gaussian_epochs, lr=p.gaussian_lr, device=p.device)
    default = DEFAULT_PAIRS.get(dataset)
    lr = p.lr if p.lr is not None else (default.lr if default else DEFAULT_LR)
    return train_config(
        tasks, epochs=p.epochs, batch_size=p.batch_size, lr=lr, optimizer="sgd", momentum=p.momentum, device=p.device
    )


def _configs(dataset: str, student_view: str, tasks: Sequence[Task], p: CaseStudyParameters, datasets: _Datasets):
    """The nets, the training config and Algorithm 1's joint-fit config (MFH's SGD at 0.01 with
    momentum 0.9, as many epochs as the other fits)."""
    teacher, student = pair_nets(dataset, student_view, datasets)
    config = pair_config(dataset, tasks, p)
    alg1 = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=ALGORITHM1_CONFIG.lr,
        optimizer=ALGORITHM1_CONFIG.optimizer,
        momentum=ALGORITHM1_CONFIG.momentum,
        device=p.device,
    )
    return teacher, student, config, alg1


def _alg1_nets(p: CaseStudyParameters, teacher: ModelSpec, student: ModelSpec) -> tuple[ModelSpec, ModelSpec]:
    return (ModelSpec("linear"), ModelSpec("linear")) if p.alg1_model == "linear" else (teacher, student)


def _train_means(group: Sequence[Task], modality) -> torch.Tensor:
    """Each task's training mean of ``modality``'s flattened channels, ``(M, channels)``."""
    return torch.stack([modality_input(t.splits.train, modality).flatten(1).mean(0) for t in group])


def _n_classes(group: Sequence[Task]) -> int:
    return max(part.n_classes for t in group for part in t.splits.parts().values())


# ----------------------------------------------------------------------------- §2: two teachers
def view_columns(task: Task, views: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each view's column indices in the fused (flattened, concatenated) input of ``views``."""
    widths = [modality_input(task.splits.train, v).flatten(1).shape[1] for v in views]
    starts = np.cumsum([0, *widths])
    return {v: torch.arange(int(a), int(b)) for v, a, b in zip(views, starts[:-1], starts[1:])}


def held_variant(union: Sequence[str], kept: Sequence[str], columns: Mapping[str, torch.Tensor]):
    """A teacher-input variant of the fused ``union`` input: the views not in ``kept`` held at each
    task's training mean (the net then sees ``kept`` alone); ``None`` when every view is kept."""
    held = [columns[v] for v in union if v not in kept]
    if not held:
        return None
    mask = torch.zeros(sum(len(c) for c in columns.values()), dtype=torch.bool)
    mask[torch.cat(held)] = True

    def hold(x: torch.Tensor, group: Sequence[Task]) -> torch.Tensor:
        return torch.where(mask, _train_means(group, tuple(union)).unsqueeze(1), x)

    return hold


@torch.no_grad()
def block_scores(
    teacher: Stack,
    x_a: torch.Tensor,
    student: Stack,
    x_b: torch.Tensor,
    blocks: Mapping[str, torch.Tensor],
    *,
    repeats: int,
    seed: int,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per block of the teacher's input columns (``blocks``: name → column indices of
    ``x_a`` ``(M, N, columns)``): (Algorithm 1's score, the teacher's reliance), each ``(M,)``, with
    the block's columns permuted across samples together (``repeats`` permutations from ``seed``).
    Score: ``E‖t_V − s‖² − ‖t − s‖²``; reliance: ``E‖t_V − t‖²`` (mean squared logit differences)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    t, s = teacher(x_a)[0], student(x_b)[0]
    gap = ((t - s) ** 2).mean((-1, -2))
    generator = torch.Generator().manual_seed(int(seed))
    n_models, n_samples = x_a.shape[:2]
    out = {}
    for name, block in blocks.items():
        score, reliance = torch.zeros(n_models), torch.zeros(n_models)
        for _ in range(repeats):
            order = torch.rand(n_models, n_samples, generator=generator).argsort(-1)
            permuted = x_a.clone()
            part = x_a[..., block]
            permuted[..., block] = torch.gather(part, 1, order.unsqueeze(-1).expand_as(part))
            moved = teacher(permuted)[0]
            score += ((moved - s) ** 2).mean((-1, -2)) / repeats
            reliance += ((moved - t) ** 2).mean((-1, -2)) / repeats
        out[name] = (score - gap, reliance)
    return out


def _per_pair(group: TeacherGroup, table: pd.DataFrame) -> pd.DataFrame:
    """The group's rows (column ``teacher_views``) as each pair's: its unimodal and multimodal
    teachers and their KD students (``teacher_input``), No-KD (``none``); a teacher two pairs share
    appears under each."""
    parts = []
    for pair in group.pairs:
        names = {"+".join(group.teacher_views(pair, i)): i for i in TEACHER_INPUTS}
        mine = table[table["teacher_views"].isin(list(names)) | (table["method"] == "no_kd")].copy()
        mine["teacher_input"] = mine["teacher_views"].map(names)
        mine.loc[mine["method"] == "no_kd", ["teacher_input", "teacher_views"]] = "none"
        parts.append(mine.assign(pair=pair.label, form=pair.form))
    return pd.concat(parts, ignore_index=True)


def _explanation(
    group: TeacherGroup,
    tasks: list[Task],
    nets: tuple[ModelSpec, ModelSpec],
    alg1_config: TrainConfig,
    p: CaseStudyParameters,
    runner: StudyRunner,
) -> None:
    """Algorithm 1 for every multimodal teacher of the group (one joint fit), scored per pair on
    its base and added views; rows of method ``algorithm1``."""
    union, seeds, n = group.union, [t.seed for t in tasks], len(tasks)
    columns = view_columns(tasks[0], union)
    multimodal = group.view_sets(("multimodal",))
    x, y = stack_split(tasks, "train", union)
    x_b = stack_split(tasks, "train", group.student_view)[0]
    edits = [held_variant(union, views, columns) for views in multimodal]
    x_a = torch.cat([x if edit is None else edit(x, tasks) for edit in edits])
    x_b, y = repeat_models(x_b, len(multimodal)), repeat_models(y, len(multimodal))
    n_classes = _n_classes(tasks)
    teacher_spec, student_spec = (
        net.sized(tuple(data.shape[2:]), n_classes) for net, data in zip(_alg1_nets(p, *nets), (x_a, x_b))
    )
    joint = joint_fit(
        teacher_spec,
        x_a,
        student_spec,
        x_b,
        y,
        seeds=seeds * len(multimodal),
        config=alg1_config,
        progress=runner.progress,
    )
    runner.record("algorithm1", joint, dataset=group.dataset, student_view=group.student_view)
    for pair in group.pairs:
        i = multimodal.index(group.teacher_views(pair, "multimodal"))
        models = range(i * n, (i + 1) * n)
        blocks = {"base": columns[pair.base], "added": torch.cat([columns[v] for v in pair.added])}
        scores = block_scores(
            joint.modules["teacher"].subset(models),
            x_a[i * n : (i + 1) * n],
            joint.modules["student"].subset(models),
            x_b[i * n : (i + 1) * n],
            blocks,
            repeats=p.alg1_repeats,
            seed=seeds[0],
        )
        (base_score, base_reliance), (added_score, added_reliance) = scores["base"], scores["added"]
        settings = {
            "pair": pair.label,
            "form": pair.form,
            "teacher_input": "multimodal",
            "teacher_views": "+".join(group.teacher_views(pair, "multimodal")),
        }
        values = {
            "added_mg_share": added_score / added_reliance,
            "base_mg_share": base_score / base_reliance,
            "added_reliance_share": added_reliance / (added_reliance + base_reliance),
        }
        for metric, value in values.items():
            rows = tidy_rows(
                TEACHERS_STUDY, "algorithm1", [{**t.settings, **settings} for t in tasks], seeds, metric, value.numpy()
            )
            runner.add(rows)


def run_teacher_group(
    group: TeacherGroup,
    p: CaseStudyParameters,
    progress: bool | None = None,
    datasets: _Datasets | None = None,
    tasks: list[Task] | None = None,
) -> StudyRun:
    """MFH §2 for one group's pairs: every teacher a variant of one fit on the fused views, No-KD
    and a KD student per teacher, then Algorithm 1's explanation (one joint fit)."""
    datasets = datasets or _Datasets()
    union = group.union
    if tasks is None:
        tasks = view_tasks(group.dataset, [*union, group.student_view], p, datasets, group.label)
    teacher, student, config, alg1_config = _configs(group.dataset, group.student_view, tasks, p, datasets)
    runner = StudyRunner(TEACHERS_STUDY, progress=progress)
    for shaped in groups_of_equal_shape(tasks, [union, group.student_view]):
        columns = view_columns(shaped[0], union)
        run = run_teacher_student(
            shaped,
            study=TEACHERS_STUDY,
            teacher_modality=union,
            student_modality=group.student_view,
            teacher_model=teacher,
            student_model=student,
            teacher_config=config,
            losses={"kd": kd_loss(p, ce_weight=p.kd_ce_weight)},
            variants={"+".join(views): held_variant(union, views, columns) for views in group.view_sets()},
            variant_column="teacher_views",
            progress=progress,
        )
        run.table = _per_pair(group, run.table)
        runner.include(run)
        _explanation(group, shaped, (teacher, student), alg1_config, p, runner)
    return runner.result()


# ----------------------------------------------------------------------------- the removal sweep
def removal_masks(
    scores: torch.Tensor, seeds: Sequence[int], ratios: Sequence[float], orders: Sequence[str]
) -> dict[tuple[str, float], torch.Tensor]:
    """Channels to mean-replace per (order, ratio) with ratio > 0, ``(M, channels)`` each, from
    Algorithm 1's scores ``(M, channels)``: ``least_salient`` removes the lowest-scoring (least
    modality-general) first, ``most_salient`` the highest, ``random`` a seeded random order;
    ``round(ratio · channels)`` channels, nested across ratios within an order."""
    unknown = sorted(set(orders) - set(ORDERS))
    if unknown:
        raise ValueError(f"unknown removal order(s) {unknown}; valid: {', '.join(ORDERS)}")
    n_models, n_channels = scores.shape
    masks = {}
    for ratio in ratios:
        if ratio == 0:
            continue
        k = torch.full((n_models,), int(round(ratio * n_channels)))
        for order in orders:
            masks[(order, float(ratio))] = REMOVAL_ORDERS[order](scores, seeds, k)
    return masks


def _removal_variant(mask: torch.Tensor, means: torch.Tensor, seeds: Sequence[int]):
    """A teacher-input variant: per task (found by its seed) the masked channels at their training mean."""
    row = {int(seed): i for i, seed in enumerate(seeds)}

    def removed(x: torch.Tensor, group: Sequence[Task]) -> torch.Tensor:
        index = [row[t.seed] for t in group]
        return torch.where(mask[index].unsqueeze(1), means[index].unsqueeze(1), x)

    return removed


def _variant_name(order: str, ratio: float) -> str:
    return f"{order} · r = {ratio:g}"


def run_removal_pair(
    pair: ViewPair,
    p: CaseStudyParameters,
    progress: bool | None = None,
    datasets: _Datasets | None = None,
    tasks: list[Task] | None = None,
) -> StudyRun:
    """One pair's removal sweep: Algorithm 1 on A's input channels, then every (order, ratio)
    teacher and its KD student as variants of one ``run_teacher_student`` call."""
    datasets = datasets or _Datasets()
    if tasks is None:
        tasks = view_tasks(pair.dataset, [pair.base, pair.student_view], p, datasets, pair.label)
    tasks = [replace(task, settings={**task.settings, "pair": pair.label}) for task in tasks]
    shape = tasks[0].splits.train.shape(pair.base)
    if len(shape) != 1:
        raise ValueError(
            f"removal pair {pair.label!r}: view {pair.base!r} has samples of shape {shape}; "
            "the removal sweep replaces the channels of a vector view"
        )
    teacher, student, config, alg1_config = _configs(pair.dataset, pair.student_view, tasks, p, datasets)
    runner = StudyRunner(REMOVAL_STUDY, progress=progress)
    for group in groups_of_equal_shape(tasks, [pair.teacher_views, pair.student_view]):
        seeds = [t.seed for t in group]
        (x_a, y), (x_b, _) = (stack_split(group, "train", m) for m in (pair.teacher_views, pair.student_view))
        n_classes = _n_classes(group)
        alg1_teacher, alg1_student = (
            net.sized(tuple(x.shape[2:]), n_classes) for net, x in zip(_alg1_nets(p, teacher, student), (x_a, x_b))
        )
        saliency = algorithm1(
            alg1_teacher,
            x_a,
            alg1_student,
            x_b,
            y,
            seeds=seeds,
            layer="input",
            repeats=p.alg1_repeats,
            config=alg1_config,
            progress=progress,
        )
        runner.record("algorithm1", saliency.joint, dataset=pair.dataset, pair=pair.label)
        means = _train_means(group, pair.teacher_views)
        masks = removal_masks(saliency.scores, seeds, p.ratios, p.orders)
        variants = {_variant_name("none", 0.0): None} | {
            _variant_name(order, ratio): _removal_variant(mask, means, seeds) for (order, ratio), mask in masks.items()
        }
        run = run_teacher_student(
            group,
            study=REMOVAL_STUDY,
            teacher_modality=pair.teacher_views,
            student_modality=pair.student_view,
            teacher_model=teacher,
            student_model=student,
            teacher_config=config,
            losses={"kd": kd_loss(p, ce_weight=p.removal_kd_ce_weight)},
            variants=variants,
            variant_column="removal",
            progress=progress,
        )
        keys = {_variant_name("none", 0.0): ("none", 0.0)} | {_variant_name(*key): key for key in masks}
        table = run.table
        table["order"] = [keys[v][0] for v in table["removal"]]
        table["ratio"] = [keys[v][1] for v in table["removal"]]
        table.loc[table["method"] == "no_kd", "order"] = "none"
        run.table = table.drop(columns="removal")
        runner.include(run)
    return runner.result()


# ----------------------------------------------------------------------------- the whole study
def run(p: CaseStudyParameters, progress: bool | None = None) -> StudyRun:
    """Every teacher pair, then every removal pair, of ``p``; one table, one log."""
    datasets = _Datasets()
    # every dataset loads (and every pair is checked) before anything trains
    groups = teacher_groups(p.teacher_pairs())
    teacher_tasks = {
        group: view_tasks(group.dataset, [*group.union, group.student_view], p, datasets, group.label)
        for group in groups
    }
    removal_tasks = {
        pair: view_tasks(pair.dataset, [pair.base, pair.student_view], p, datasets, pair.label)
        for pair in p.removal_view_pairs()
    }
    real_tasks = [
        task
        for tasks in [*teacher_tasks.values(), *removal_tasks.values()]
        for task in tasks
        if task.settings["dataset"] != GAUSSIAN
    ]
    runs = [StudyRun(pd.DataFrame(), RunLog(splits=split_records(real_tasks)))]
    runs += [run_teacher_group(group, p, progress, datasets, tasks) for group, tasks in teacher_tasks.items()]
    runs += [run_removal_pair(pair, p, progress, datasets, tasks) for pair, tasks in removal_tasks.items()]
    return StudyRun.concat(runs)


# ----------------------------------------------------------------------------- analysis
def _accuracy(table: pd.DataFrame, study: str) -> pd.DataFrame:
    return table[(table["study"] == study) & (table["metric"] == "test_acc")]


def pair_gains(table: pd.DataFrame) -> pd.DataFrame:
    """Per pair and seed, in points: ``teacher_gain`` (multimodal − unimodal teacher),
    ``student_gain`` (KD from the multimodal − KD from the unimodal teacher), ``kd_gain_unimodal``
    and ``kd_gain_multimodal`` (each KD student − No-KD); with Algorithm 1's shares, whether any
    compared model ended at chance, and the Gaussian pairs' true added share."""
    acc = _accuracy(table, TEACHERS_STUDY)
    keys = ["dataset", "pair", "form", "seed"]
    wide = acc.pivot_table(index=keys + ["n_classes"], columns=["method", "teacher_input"], values="value", sort=False)
    wide.columns = [f"{method}:{teacher_input}" for method, teacher_input in wide.columns]
    wide = wide.reset_index()
    gains = wide[keys].copy()
    gains["teacher_gain"] = 100 * (wide["teacher:multimodal"] - wide["teacher:unimodal"])
    gains["student_gain"] = 100 * (wide["kd:multimodal"] - wide["kd:unimodal"])
    gains["kd_gain_unimodal"] = 100 * (wide["kd:unimodal"] - wide["no_kd:none"])
    gains["kd_gain_multimodal"] = 100 * (wide["kd:multimodal"] - wide["no_kd:none"])
    models = wide[[c for c in wide.columns if ":" in c]]
    gains["at_chance"] = (models.le(claims.chance_ceiling(wide["n_classes"].to_numpy()), axis=0)).any(axis=1)
    alg1 = table[(table["study"] == TEACHERS_STUDY) & (table["method"] == "algorithm1")]
    if len(alg1):
        shares = alg1.pivot_table(index=["pair", "seed"], columns="metric", values="value", sort=False).reset_index()
        gains = gains.merge(shares, on=["pair", "seed"], how="left")
    added = gains["pair"].map(lambda label: label.split("(+")[1].split(")")[0] if "(+" in label else "")
    truth = added.map(GAUSSIAN_ADDED_TRUTH)
    gains["true_added_mg_share"] = truth.where(gains["dataset"] == GAUSSIAN)
    return gains


def _interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean and 95 % t interval of the mean."""
    values = values.dropna().to_numpy(dtype=float)
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2 or values.std(ddof=1) == 0:
        return mean, mean, mean
    from scipy import stats

    interval = stats.ttest_1samp(values, 0.0).confidence_interval(claims.CONFIDENCE)
    return mean, float(interval.low), float(interval.high)


def gains_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per pair: teacher gain and student gain (points, mean and 95 % interval over seeds) side by
    side, Algorithm 1's shares (means), whether the teacher is better (mean gain > 0) and whether
    its student is worse or equal (mean student gain ≤ 0) or not shown better (interval reaches 0)."""
    gains = pair_gains(table)
    rows = []
    for (dataset, pair, form), part in gains.groupby(["dataset", "pair", "form"], sort=False):
        teacher = _interval(part["teacher_gain"])
        student = _interval(part["student_gain"])
        row = {
            "dataset": dataset,
            "pair": pair,
            "form": form,
            "n_seeds": len(part),
            "teacher_gain": teacher[0],
            "teacher_ci_low": teacher[1],
            "teacher_ci_high": teacher[2],
            "student_gain": student[0],
            "student_ci_low": student[1],
            "student_ci_high": student[2],
            "kd_gain_unimodal": part["kd_gain_unimodal"].mean(),
            "kd_gain_multimodal": part["kd_gain_multimodal"].mean(),
        }
        for column in ("added_mg_share", "base_mg_share", "added_reliance_share", "true_added_mg_share"):
            if column in part:
                row[column] = part[column].mean()
        row["better_teacher"] = teacher[0] > 0
        row["worse_or_equal_student"] = student[0] <= 0
        row["student_not_shown_better"] = student[1] <= 0
        row["at_chance"] = bool(part["at_chance"].any())
        rows.append(row)
    return pd.DataFrame(rows)


def share_summary(gains: pd.DataFrame) -> pd.DataFrame:
    """Among the pairs whose multimodal teacher is better (mean teacher gain > 0): how many give a
    worse or equal student (mean student gain ≤ 0), and how many a student not shown better (its
    95 % interval reaches 0 or below); over all pairs, over the real pairs."""
    rows = []
    for scope, part in (("all pairs", gains), ("real pairs", gains[gains["dataset"] != GAUSSIAN])):
        better = part[part["better_teacher"]]
        rows.append(
            {
                "pairs": scope,
                "n_pairs": len(part),
                "better_teacher": len(better),
                "worse_or_equal_student": int(better["worse_or_equal_student"].sum()),
                "share_worse_or_equal": better["worse_or_equal_student"].mean() if len(better) else float("nan"),
                "student_not_shown_better": int(better["student_not_shown_better"].sum()),
                "share_not_shown_better": better["student_not_shown_better"].mean() if len(better) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def paper_vs_kit(gains: pd.DataFrame) -> pd.DataFrame:
    """MFH's two cases beside every kit pair: teacher gain and student gain (points; the paper's
    NYU numbers are mIoU points), the kit's as mean [95 % interval]."""
    paper = PAPER_CASES.assign(teacher=PAPER_CASES["teacher_gain"].map("{:+.2f}".format))
    paper["student"] = PAPER_CASES["student_gain"].map("{:+.2f}".format)
    cell = lambda m, lo, hi: f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"  # noqa: E731
    kit = pd.DataFrame(
        {
            "case": gains["pair"] + " (kit, " + gains["form"] + ")",
            "metric": "accuracy points",
            "teacher": [cell(*v) for v in gains[["teacher_gain", "teacher_ci_low", "teacher_ci_high"]].to_numpy()],
            "student": [cell(*v) for v in gains[["student_gain", "student_ci_low", "student_ci_high"]].to_numpy()],
        }
    )
    shown = pd.concat([paper[["case", "metric", "teacher", "student"]], kit], ignore_index=True)
    return shown.rename(columns={"teacher": "teacher gain", "student": "student gain"})


def removal_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Per removal pair, order and ratio: the KD student's (and teacher's) test accuracy, mean,
    std and n over seeds, with 95 % interval half-width (``ci95``, points); r = 0 (the whole
    teacher) is part of every order's curve."""
    acc = _accuracy(table, REMOVAL_STUDY)
    acc = acc[acc["method"].isin(["kd", "teacher"])]
    whole = acc[acc["order"] == "none"]
    orders = [o for o in ORDERS if o in set(acc["order"])]
    curves = pd.concat([acc[acc["order"] != "none"]] + [whole.assign(order=o) for o in orders], ignore_index=True)
    summary = summarize(curves, by=["pair", "method", "order", "ratio"])
    summary["ci95"] = 100 * figures.band_half_width(summary, "ci95")
    return summary.sort_values(["pair", "method", "order", "ratio"], ignore_index=True)


def removal_table(table: pd.DataFrame) -> pd.DataFrame:
    """The KD student's accuracy (percent, mean ± 95 % half-width) per pair and order (rows) and
    ratio (columns), No-KD beside it."""
    curves = removal_curves(table)
    kd = curves[curves["method"] == "kd"].copy()
    kd["cell"] = [f"{100 * m:.2f} ± {h:.2f}" for m, h in zip(kd["mean"], kd["ci95"])]
    wide = kd.pivot(index=["pair", "order"], columns="ratio", values="cell")
    wide.columns = [f"r = {r:g}" for r in wide.columns]
    no_kd = _accuracy(table, REMOVAL_STUDY)
    no_kd = 100 * no_kd[no_kd["method"] == "no_kd"].groupby("pair")["value"].mean()
    return wide.assign(no_kd=[f"{no_kd[pair]:.2f}" for pair, _ in wide.index])


def rise_and_fall(table: pd.DataFrame, order: str = "least_salient") -> pd.DataFrame:
    """Per removal pair and seed, in points: the KD student's accuracy at its peak ratio r* > 0
    minus at r = 0 (``rise``) and minus at the largest ratio (``fall``). r* is chosen on the
    other seeds' mean curve (leave one seed out), so the seed a difference is measured on never
    picks its own peak (a peak picked on the same noisy means would flatter the rise)."""
    acc = _accuracy(table, REMOVAL_STUDY)
    kd = acc[(acc["method"] == "kd") & acc["order"].isin(["none", order])]
    rows = []
    for pair, part in kd.groupby("pair", sort=False):
        curve = 100 * part.pivot_table(index="seed", columns="ratio", values="value")
        top = max(curve.columns)
        for seed in curve.index:
            others = curve.drop(index=seed) if len(curve) > 1 else curve
            peak = others.mean()[[r for r in curve.columns if r > 0]].idxmax()
            rows.append(
                {
                    "pair": pair,
                    "seed": seed,
                    "peak_ratio": peak,
                    "rise": curve.loc[seed, peak] - curve.loc[seed, 0.0],
                    "fall": curve.loc[seed, peak] - curve.loc[seed, top],
                }
            )
    return pd.DataFrame(rows)


def _removal_at_chance(table: pd.DataFrame, pair: str) -> str:
    acc = _accuracy(table, REMOVAL_STUDY)
    rows = acc[(acc["pair"] == pair) & (acc["method"] == "kd")]
    low = rows["value"] <= claims.chance_ceiling(rows["n_classes"].to_numpy())
    return f"kd at chance on {int(low.sum())} of {len(rows)} (seed, order, ratio) models" if low.any() else ""


# ----------------------------------------------------------------------------- claims
_PER_SEED = "per seed"
NO_BETTER_STUDENT = claims.Claim(
    claim="a better (multimodal) teacher gives no better student: the two teachers' students are within ±1 point",
    source="MFH §2 (AV-MNIST: teacher +7.04, student −0.37; NYU Depth V2: +4.64, −0.22 mIoU; secondary)",
    kind="paper",
    quantity=f"KD from the multimodal − KD from the unimodal teacher, {_PER_SEED}",
    unit="points",
    prediction="= 0",
    sesoi=ONE_POINT,
)
SPECIFIC_VIEW_NO_BETTER = claims.Claim(
    claim="an added view with only teacher-specific information gives no better student",
    source="MFH §4, Fig. 3 (α grows: a far better teacher, no better student)",
    kind="paper",
    quantity=f"KD from the multimodal − KD from the unimodal teacher, {_PER_SEED}",
    unit="points",
    prediction="= 0",
    sesoi=ONE_POINT,
)
GENERAL_VIEW_BETTER = claims.Claim(
    claim="an added view with modality-general information gives a better student",
    source="MFH §4, the modality focusing hypothesis (γ grows: Fig. 2)",
    kind="paper",
    quantity=f"KD from the multimodal − KD from the unimodal teacher, {_PER_SEED}",
    unit="points",
    prediction="> 0",
    sesoi=ONE_POINT,
)
GAIN_FOLLOWS_MG_SHARE = claims.Claim(
    claim="the student's gain follows the modality-general share of the added views, across pairs",
    source="MFH §4, the modality focusing hypothesis (our reading, across the kit's pairs)",
    kind="paper",
    quantity="rank correlation of student gain with Algorithm 1's added_mg_share, pairs as units",
    unit="Spearman ρ",
    prediction="> 0",
    sesoi=0.3,
)
BETTER_TEACHER = claims.Claim(
    claim="the added views make a better teacher (the premise of MFH §2)",
    source="kit",
    kind="finding",
    quantity=f"multimodal − unimodal teacher test accuracy, {_PER_SEED}",
    unit="points",
    prediction="> 0",
    sesoi=ONE_POINT,
)
ALG1_SEES_THE_SHARE = claims.Claim(
    claim="Algorithm 1's added_mg_share is higher for the added a_general view than for a_specific",
    source="kit (Gaussian generator, known Venn diagram)",
    kind="check",
    quantity="added_mg_share of a_general added − of a_specific added, per run",
    unit="share",
    prediction="> 0",
    sesoi=0.2,
)
RISES = claims.Claim(
    claim="removing the least modality-general channels first lifts the student: its peak over r > 0 beats r = 0",
    source="MFH §5, VGGSound removal ratio (first rises; our reading)",
    kind="paper",
    quantity="KD at the peak r* (chosen on the other seeds) − KD at r = 0, per seed",
    unit="points",
    prediction="> 0",
    sesoi=ONE_POINT,
)
FALLS = claims.Claim(
    claim="... then falls: at the largest ratio the student is below its peak",
    source="MFH §5, VGGSound removal ratio (then falls; our reading)",
    kind="paper",
    quantity="KD at the peak r* (chosen on the other seeds) − KD at the largest r, per seed",
    unit="points",
    prediction="> 0",
    sesoi=ONE_POINT,
)
LEAST_BEATS_RANDOM = claims.Claim(
    claim="which channels go matters: least-salient-first removal beats random removal",
    source="MFH §5, random-removal control (our reading)",
    kind="paper",
    quantity="KD least_salient − KD random, mean over r > 0, per seed",
    unit="points",
    prediction="> 0",
    sesoi=ONE_POINT,
)


def _gaussian_claim(pair: str) -> claims.Claim:
    added = pair.split("(+")[1].split(")")[0]
    return SPECIFIC_VIEW_NO_BETTER if GAUSSIAN_ADDED_TRUTH.get(added) == 0.0 else GENERAL_VIEW_BETTER


def claim_rows(table: pd.DataFrame) -> list[dict]:
    """Every claim's row (before Holm), stated before the data; seeds (or pairs) as units."""
    rows = []
    if (table["study"] == TEACHERS_STUDY).any():
        gains = pair_gains(table)
        for (dataset, pair), part in gains.groupby(["dataset", "pair"], sort=False):
            chance = bool(part["at_chance"].any())
            note = f"a model at chance on {int(part['at_chance'].sum())} seed(s)" if chance else ""
            statement = _gaussian_claim(pair) if dataset == GAUSSIAN else NO_BETTER_STUDENT
            rows.append(BETTER_TEACHER.judge(part["teacher_gain"], setting=pair, at_chance=chance, note=note))
            rows.append(statement.judge(part["student_gain"], setting=pair, at_chance=chance, note=note))
        per_pair = gains_table(table)
        if "added_mg_share" in per_pair:
            rows.append(
                GAIN_FOLLOWS_MG_SHARE.judge_correlation(
                    per_pair["added_mg_share"], per_pair["student_gain"], setting="all pairs"
                )
            )
        gaussian = gains[gains["dataset"] == GAUSSIAN].dropna(subset=["true_added_mg_share"])
        if "added_mg_share" in gaussian and gaussian["true_added_mg_share"].nunique() == 2:
            by_truth = gaussian.pivot_table(index="seed", columns="true_added_mg_share", values="added_mg_share")
            rows.append(ALG1_SEES_THE_SHARE.judge(by_truth[1.0] - by_truth[0.0], setting="gaussian"))
    if (table["study"] == REMOVAL_STUDY).any():
        acc = _accuracy(table, REMOVAL_STUDY)
        for pair, part in rise_and_fall(table).groupby("pair", sort=False):
            chance = _removal_at_chance(table, pair)
            rows.append(RISES.judge(part["rise"], setting=pair, at_chance=bool(chance), note=chance))
            rows.append(FALLS.judge(part["fall"], setting=pair, at_chance=bool(chance), note=chance))
            kd = acc[(acc["pair"] == pair) & (acc["method"] == "kd") & (acc["ratio"] > 0)]
            wide = kd.pivot_table(index=["seed", "ratio"], columns="order", values="value")
            if {"least_salient", "random"} <= set(wide.columns):
                difference = 100 * (wide["least_salient"] - wide["random"]).groupby("seed").mean()
                rows.append(LEAST_BEATS_RANDOM.judge(difference, setting=pair, at_chance=bool(chance), note=chance))
    return rows


def claims_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`claim_rows` as :func:`cmkd_lab.analysis.claims.table` (Holm within each kind)."""
    return claims.table(claim_rows(table))


# ----------------------------------------------------------------------------- figures
def gains_figure(gains: pd.DataFrame, title: str = "") -> go.Figure:
    """Student gain against teacher gain, one marker per pair with its 95 % intervals on both axes,
    MFH's two cases as open markers (NYU's in mIoU points); points below the zero line are a better
    teacher with a worse student."""
    fig = go.Figure()
    for i, row in enumerate(gains.itertuples()):
        fig.add_trace(
            go.Scatter(
                x=[row.teacher_gain],
                y=[row.student_gain],
                mode="markers",
                name=row.pair,
                marker=dict(color=figures.PALETTE[i % len(figures.PALETTE)], size=11),
                error_x=dict(
                    type="data",
                    symmetric=False,
                    array=[row.teacher_ci_high - row.teacher_gain],
                    arrayminus=[row.teacher_gain - row.teacher_ci_low],
                ),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[row.student_ci_high - row.student_gain],
                    arrayminus=[row.student_gain - row.student_ci_low],
                ),
            )
        )
    fig.add_trace(
        go.Scatter(
            x=PAPER_CASES["teacher_gain"].tolist(),
            y=PAPER_CASES["student_gain"].tolist(),
            mode="markers+text",
            text=PAPER_CASES["case"].tolist(),
            textposition="top center",
            name="MFH §2 (paper)",
            marker=dict(color="#222222", symbol="circle-open", size=12, line=dict(width=2)),
        )
    )
    fig = figures.style(
        fig,
        figures.with_caption(title, "bars: 95 % confidence intervals over seeds (t); open markers: the paper's cases"),
        "teacher gain: multimodal − unimodal teacher (points)",
        "student gain: KD from multimodal − from unimodal (points)",
    )
    fig.add_vline(x=0, line=dict(color="#999999", width=1))
    return figures.zero_line(fig).update_layout(margin=dict(t=80))


def removal_figure(table: pd.DataFrame, pair: str, title: str = "") -> go.Figure:
    """The KD student's accuracy against the share r of the teacher's input channels removed, one
    line per order with its 95 % band; No-KD as a dashed line."""
    curves = removal_curves(table)
    kd = curves[(curves["pair"] == pair) & (curves["method"] == "kd")]
    fig = figures.metric_vs_knob(
        kd,
        x="ratio",
        color="order",
        band="ci95",
        title=title or f"{pair}: the KD student as the teacher loses channels",
        x_title="r: share of the teacher's input channels mean-replaced",
        names={"least_salient": "least MG first (MFH)", "most_salient": "most MG first", "random": "random"},
    )
    acc = _accuracy(table, REMOVAL_STUDY)
    no_kd = acc[(acc["pair"] == pair) & (acc["method"] == "no_kd")]["value"].mean()
    fig.add_hline(y=100 * no_kd, line=dict(color=figures.METHOD_COLORS["no_kd"], dash="dash"), annotation_text="No-KD")
    return fig


# ----------------------------------------------------------------------------- exercises
@functools.cache
def _gaussian_gains(n_runs: int, epochs: int, alg1_repeats: int) -> pd.DataFrame:
    p = CaseStudyParameters.create(
        pairs=GAUSSIAN_PAIRS,
        removal_pairs=(),
        gaussian_runs=n_runs,
        gaussian_epochs=epochs,
        alg1_repeats=alg1_repeats,
        device="cpu",
    )
    return gains_table(run(p, progress=False).table).set_index("pair")


def gaussian_gains(n_runs: int = 3, epochs: int = 200, alg1_repeats: int = 3) -> pd.DataFrame:
    """The exercises' Gaussian pairs (:func:`gains_table`, indexed by pair), on the CPU; computed
    once per setting."""
    return _gaussian_gains(n_runs, epochs, alg1_repeats).copy()


_SPECIFIC = ViewPair.parse(GAUSSIAN_PAIRS[0]).label
_GENERAL = ViewPair.parse(GAUSSIAN_PAIRS[1]).label
_SMALL = "(Gaussian pairs, 3 runs, 200 epochs)"


@course.exercise(
    "02_mfh_case_studies",
    "specific_teacher_minus_student_gain",
    other={"epochs": 60},
    what=f"teacher gain − student gain when a_specific is added to an a_general teacher {_SMALL}",
)
def specific_teacher_minus_student_gain_exercise(n_runs: int = 3, epochs: int = 200, alg1_repeats: int = 3) -> float:
    row = gaussian_gains(n_runs, epochs, alg1_repeats).loc[_SPECIFIC]
    return float(row["teacher_gain"] - row["student_gain"])


@course.exercise(
    "02_mfh_case_studies",
    "added_mg_share_gap",
    other={"epochs": 60},
    what=f"Algorithm 1's added_mg_share with a_general added minus with a_specific added {_SMALL}",
)
def added_mg_share_gap_exercise(n_runs: int = 3, epochs: int = 200, alg1_repeats: int = 3) -> float:
    shares = gaussian_gains(n_runs, epochs, alg1_repeats)["added_mg_share"]
    return float(shares[_GENERAL] - shares[_SPECIFIC])
