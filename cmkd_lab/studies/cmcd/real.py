"""CMCD on real paired data (04_cmcd_real): any registered dataset, by (source, target) pairs.

Pairs come from ``pairs`` ("dataset:source>target"), else the kit's defaults for its own datasets
(mfeat: pixels → each other view; watch: accel → gyro; segment: colour → shape), else a dataset's
first two modalities. Nets come from each modality's shape (vector: MLP, (C, T): 1-D CNN,
(C, H, W): 2-D CNN). Per seed, the stages of :mod:`.pipeline` use the training split: SSL on every
training sample's source, distillation on ``n_paired`` of them (None: all but the labeled ones),
and ``labeled_per_class`` labeled samples per class; the test split scores.

Rows: study ``cmcd_real``, settings ``dataset``, ``source``, ``target``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ...analysis.results import RunLog
from ...app.notebook import NotebookParameters
from ...datasets import load, real_dataset_names
from ..real_data import net_for, note_small_test_sets, parse_pairs, split_records
from ..runner import StudyRun, StudyRunner, Task
from .pipeline import METHODS, Stages, run_transfers, transfers_from_splits

STUDY = "cmcd_real"
MFEAT_VIEWS = ("fourier", "profile", "karhunen_loeve", "zernike", "morphological")
DEFAULT_PAIRS = {
    "mfeat": [("pixels", view) for view in MFEAT_VIEWS],
    "watch": [("accel", "gyro")],
    "segment": [("colour", "shape")],
}


@dataclass(frozen=True)
class CMCDRealParameters(Stages, NotebookParameters):
    """CMCD's three stages on real pairs: a method table per pair and distance vs error across pairs."""

    datasets: tuple[str, ...] = ("mfeat", "segment")
    pairs: tuple[str, ...] = ()  # "dataset:source>target", e.g. "mine:accel>gyro"; several per dataset allowed
    n_runs: int | None = None
    n_paired: int | None = None  # None: every training sample that is not labeled
    labeled_per_class: int = 5
    ssl_epochs: int | None = None
    distill_epochs: int | None = None
    head_epochs: int | None = None
    embedding_dim: int = 32
    # the other stage settings (learning rates, batch size, temperatures, CMD's queue): see Stages
    standardize: bool = True  # z-score each modality with training-split statistics

    notebook: ClassVar[str] = "04_cmcd_real"
    profile_defaults: ClassVar = {
        "quick": {"n_runs": 2, "ssl_epochs": 10, "distill_epochs": 20, "head_epochs": 100},
        "full": {"n_runs": 5, "ssl_epochs": 40, "distill_epochs": 80, "head_epochs": 200},
    }
    choices: ClassVar = {"datasets": real_dataset_names}

    def __post_init__(self):
        parse_pairs(self.pairs, self.datasets)
        if self.labeled_per_class < 1:
            raise ValueError(f"labeled_per_class must be >= 1, got {self.labeled_per_class}")


def chosen_pairs(p: CMCDRealParameters, name: str, modalities: list[str]) -> list[tuple[str, str]]:
    """Dataset ``name``'s (source, target) pairs: from ``p.pairs``, else the defaults, else its first two modalities."""
    given = [(a, b) for dataset, a, b in parse_pairs(p.pairs, p.datasets) if dataset == name]
    if given:
        return given
    if name in DEFAULT_PAIRS:
        return DEFAULT_PAIRS[name]
    if len(modalities) < 2:
        raise ValueError(f"dataset {name!r} has one modality, {modalities}; CMCD needs a source and a target")
    return [tuple(modalities[:2])]


def n_classes(p: CMCDRealParameters) -> dict[str, int]:
    """How many classes each dataset of ``p`` holds (its chance accuracy is one over that)."""
    return {name: load(name).n_classes for name in p.datasets}


def run(
    p: CMCDRealParameters,
    progress: bool | None = None,
    methods: Sequence[str] = METHODS,
    labeled_per_class: Sequence[int] | None = None,
) -> StudyRun:
    """Every pair of every dataset, every method of ``methods``: one :func:`~.pipeline.run_transfers`
    per pair (nets differ by pair), all through one runner of study ``cmcd_real``.

    Parameters
    ----------
    p : CMCDRealParameters
        The notebook's parameters (datasets, pairs, scale, stages).
    progress : bool or None
        Progress bars of every fit (``None``: the engine's default).
    methods : sequence of str
        Of :data:`~.pipeline.METHODS`.
    labeled_per_class : sequence of int, optional
        None: ``p.labeled_per_class``. Several values run each pair at several numbers of labeled
        samples per class, from the same SSL teachers and on as many paired samples at each (those
        the largest leaves); the rows then carry ``labeled_per_class``.

    Returns
    -------
    StudyRun
        Tidy rows (settings ``dataset``, ``source``, ``target``, ``stage``; metrics ``test_acc``,
        ``tv_lower_bound``, ``mmd``, one row per seed), the log (every fit, and each split's
        record) and the fits.
    """
    counts = list(labeled_per_class or [p.labeled_per_class])
    if min(counts) < 1:
        raise ValueError(f"labeled_per_class values must be >= 1, got {counts}")
    loaded = {name: load(name) for name in p.datasets}  # every dataset loads before anything trains
    splits = {name: {seed: data.split(seed) for seed in range(p.n_runs)} for name, data in loaded.items()}
    tasks = [
        Task(split, seed, {"dataset": name}) for name, by_seed in splits.items() for seed, split in by_seed.items()
    ]
    note_small_test_sets(tasks)
    runner = StudyRunner(STUDY, progress=progress, log=RunLog(splits=split_records(tasks)))
    for name, data in loaded.items():
        # None: every unlabeled training sample; the smallest training split decides, so seeds stack
        n_paired = p.n_paired or min(len(split.train) for split in splits[name].values()) - max(counts) * data.n_classes
        for source, target in chosen_pairs(p, name, data.modality_names):
            settings = {"dataset": name, "source": source, "target": target}
            transfers = [
                t
                for k in counts
                for t in transfers_from_splits(
                    splits[name],
                    source,
                    target,
                    n_paired=n_paired,
                    n_labeled=k * data.n_classes,
                    standardize=p.standardize,
                    settings={**settings, "labeled_per_class": k} if labeled_per_class else settings,
                )
            ]
            run_transfers(
                runner,
                transfers,
                source_net=net_for(data, source, name),
                target_net=net_for(data, target, name),
                stages=p,
                methods=methods,
            )
    return runner.result()
