"""The user's own datasets: the README walk-through as written, the `datasets` command, the folder
every process reads, dataset modules, and the real-data studies taking any registered name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cmkd_lab.datasets as datasets
from cmkd_lab.app.cli import main
from cmkd_lab.datasets import cache, prepare, user
from cmkd_lab.studies import data_tour
from cmkd_lab.studies.mfh import real
from cmkd_lab.studies.ntdh import realpairs

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def user_folder(tmp_path, monkeypatch) -> Path:
    """An empty user datasets folder, and a registry that forgets what a test registers."""
    monkeypatch.setenv(user.ENV_VAR, str(tmp_path / "user_data"))
    monkeypatch.setattr(datasets.DATASETS, "_entries", dict(datasets.DATASETS._entries))
    monkeypatch.setattr(datasets.DATASETS, "_info", dict(datasets.DATASETS._info))
    return tmp_path / "user_data"


def write_npz(path: Path, n: int = 120, **arrays) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    defaults = {"accel": rng.normal(size=(n, 6)) + y[:, None], "gyro": rng.normal(size=(n, 4)), "y": y}
    np.savez(path, **{**defaults, **arrays})
    return path


# --- the README walk-through, as written ------------------------------------------------------


def walkthrough_blocks() -> list[tuple[str, str]]:
    section = README.read_text().split("### Your data in every study, by name", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```(python|bash)\n(.*?)```", section, flags=re.S)


def test_readme_walkthrough_runs_as_written(user_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # `python` in the README is this interpreter; the environment (the user folder) is inherited.
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    blocks = walkthrough_blocks()
    assert [language for language, _ in blocks] == ["python", "bash", "bash", "python"]
    printed = []
    for language, code in blocks:
        if language == "python":
            exec(code, {})
            continue
        for line in code.strip().splitlines():
            done = subprocess.run(line, shell=True, capture_output=True, text=True, env=environment, timeout=300)
            assert done.returncode == 0, f"{line}\n{done.stderr}"
            printed.append(done.stdout)

    assert "added 'mine'" in printed[0] and "120 samples, 3 classes; modalities accel (6,), gyro (4,)" in printed[0]
    listed = {line.split()[0]: line.split()[1:4] for line in printed[1].splitlines()[1:] if line.strip()}
    assert listed["mine"] == ["user", "True", "False"] and listed["segment"][:2] == ["offline", "True"]

    mfh = pd.read_csv(tmp_path / "outputs/02_mfh_real/results.csv")
    assert set(mfh["dataset"]) == {"mine"} and set(mfh["teacher_mode"]) == set(real.TEACHER_MODES)
    assert set(mfh["method"]) == {"teacher", "no_kd", "kd"} and set(mfh["seed"]) == {0, 1}
    regular = mfh[(mfh["method"] == "teacher") & (mfh["teacher_mode"] == "regular")]
    assert regular["value"].mean() > 0.6, "the accel teacher learns the synthetic classes (chance is 1/3)"

    ntdh = pd.read_csv(tmp_path / "outputs/03_ntdh_realpairs/results.csv")
    assert set(zip(ntdh["teacher_view"], ntdh["student_view"])) == {("accel", "gyro"), ("gyro", "accel")}
    assert ntdh.loc[ntdh["metric"] == "ntd", "value"].between(0, 0.6932).all()
    executed = {
        stem: (tmp_path / f"outputs/{stem}/{stem}.ipynb").read_text() for stem in ("02_mfh_real", "03_ntdh_realpairs")
    }
    assert "1 unit: a correlation's interval needs at least 4" in executed["03_ntdh_realpairs"]
    for text in executed.values():
        assert "note: dataset 'mine' has only 18 test samples per split" in text
    table = capsys.readouterr().out
    assert "accel" in table and "no_kd" in table


# --- the datasets command ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, arrays, message",
    [
        (["missing.npz"], None, "no file missing.npz"),
        (["mine.npz"], {}, "mine.npz has no array 'labels' for the labels; its arrays are accel, gyro, y"),
        (["mine.npz", "--labels", "y", "--groups", "subject"], {}, "has no array 'subject' for the groups"),
        (
            ["mine.npz", "--labels", "y"],
            {"gyro": np.ones((119, 4))},
            "modality 'gyro' has 119 samples but there are 120 labels",
        ),
        (["mine.npz", "--labels", "y"], {"y": np.ones((120, 2))}, "labels must be one-dimensional"),
        (["mine.npz", "--labels", "y"], {"gyro": np.array(["x"] * 120)}, "modality 'gyro' must be numeric"),
        (
            ["mine.npz", "--labels", "y"],
            {"y": np.arange(120) % 3 + 1},
            "found 3 distinct labels [1, 2, 3]. Pass relabel=True",
        ),
        (["mine.npz"], b"not a zip", "cannot read mine.npz as an .npz file of numeric arrays"),
        (
            ["mine.npy"],
            np.ones(3),
            "cannot read mine.npy as an .npz file of numeric arrays (it holds one unnamed array",
        ),
    ],
)
def test_add_refuses_bad_input_with_a_clear_message(user_folder, tmp_path, monkeypatch, capsys, argv, arrays, message):
    monkeypatch.chdir(tmp_path)
    if isinstance(arrays, bytes):
        (tmp_path / argv[0]).write_bytes(arrays)
    elif isinstance(arrays, np.ndarray):
        np.save(tmp_path / argv[0], arrays)
    elif arrays is not None:
        write_npz(tmp_path / argv[0], **arrays)
    assert main(["datasets", "add", "mine", *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not user_folder.exists() or not list(user_folder.iterdir()), "nothing is written"


def test_add_list_remove(user_folder, tmp_path, capsys):
    npz = write_npz(tmp_path / "mine.npz", y=np.array(["walk", "run", "sit"] * 40), subject=np.arange(120) % 6)
    assert main(["datasets", "add", "mfeat", str(npz), "--labels", "y"]) == 2
    assert "'mfeat' is the name of a registered dataset (offline: UCI Multiple Features" in capsys.readouterr().err
    assert main(["datasets", "add", "mine", str(npz), "--labels", "y"]) == 2
    assert "labels must be integers (class indices), got dtype <U4; pass relabel=True" in capsys.readouterr().err
    command = [
        "datasets",
        "add",
        "mine",
        str(npz),
        "--labels",
        "y",
        "--relabel",
        "--groups",
        "subject",
        "--description",
        "mine",
    ]
    assert main(command) == 0
    assert "120 samples, 3 classes, 6 groups; modalities accel (6,), gyro (4,)" in capsys.readouterr().out

    manifest = json.loads((user_folder / "mine" / cache.MANIFEST).read_text())
    assert manifest["meta"]["modalities"] == ["accel", "gyro"] and manifest["meta"]["groups"] == "subject"
    assert manifest["meta"]["class_names"] == ["run", "sit", "walk"]  # relabelled: classes in sorted order
    assert set(manifest["arrays"]) == {"accel", "gyro", "y", "subject"}
    assert manifest["arrays"]["accel"]["sha256"] == cache.sha256_file(user_folder / "mine" / "accel.npy")
    loaded = datasets.load("mine")
    assert loaded.summary()["n_groups"] == 6 and loaded.labels[:3].tolist() == [2, 0, 1]
    assert loaded.class_names == ("run", "sit", "walk")

    assert main(["datasets", "add", "mine", str(npz), "--labels", "y", "--relabel"]) == 2
    assert "pass --replace to overwrite it" in capsys.readouterr().err
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mine\s+user\s+True", out) and re.search(r"segment\s+offline", out) and str(user_folder) in out

    assert main(["datasets", "remove", "mine"]) == 0 and not (user_folder / "mine").exists()
    assert "mine" not in datasets.DATASETS
    assert main(["datasets", "remove", "mine"]) == 2
    assert "no user dataset 'mine'" in capsys.readouterr().err


def test_a_damaged_user_dataset_says_what_to_run(user_folder, tmp_path):
    npz = write_npz(tmp_path / "mine.npz")
    user.add("mine", npz, labels="y")
    path = user_folder / "mine" / "gyro.npy"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    fix = re.escape("run `python -m cmkd_lab datasets add mine FILE.npz --replace`")
    with pytest.raises(cache.CorruptDataError, match=f"is corrupt: .*{fix.replace('run', 'Run')}"):
        datasets.load("mine")
    path.unlink()
    with pytest.raises(cache.CorruptDataError, match=f"missing; {fix}"):
        datasets.load("mine")
    user.add("mine", npz, labels="y", replace=True)
    assert datasets.load("mine").shape("gyro") == (4,)


# --- every process sees them; dataset modules ---------------------------------------------------


def test_a_new_process_sees_user_datasets_modules_and_the_built_in_ones(user_folder, tmp_path):
    if not prepare.is_current("segment"):
        prepare.prepare(["segment"], log=lambda message: None)
    user.add("mine", write_npz(tmp_path / "mine.npz"), labels="y")
    (tmp_path / "my_datasets.py").write_text(
        "import numpy as np\n"
        "from cmkd_lab.datasets import from_arrays, register_dataset\n\n"
        "@register_dataset('coded', kind='mine', description='defined in code')\n"
        "def coded(n: int = 30):\n"
        "    return from_arrays({'a': np.ones((n, 2)), 'b': np.zeros((n, 3))}, np.arange(n) % 2, name='coded')\n"
    )
    environment = {**os.environ, user.MODULES_ENV_VAR: "my_datasets", "PYTHONPATH": str(tmp_path)}
    script = (
        "from cmkd_lab.datasets import list_datasets, load\n"
        "table = list_datasets().set_index('name')\n"
        "print(table.loc['mine', 'kind'], table.loc['segment', 'available'], len(load('mine')), "
        "len(load('coded', n=7)))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["user", "True", "120", "7"]

    broken = {**environment, user.MODULES_ENV_VAR: "my_datasets, not_a_module"}
    done = subprocess.run(
        [sys.executable, "-m", "cmkd_lab", "datasets", "list"], capture_output=True, text=True, env=broken, timeout=120
    )
    assert done.returncode == 2
    assert "CMKD_LAB_DATASET_MODULES names module 'not_a_module', which failed to import" in done.stderr


# --- the real-data studies take any registered name ------------------------------------------------


def test_dataset_parameters_are_checked_against_the_registry(user_folder, tmp_path, capsys):
    with pytest.raises(
        ValueError, match="'datasets': \\['mine'\\] not allowed; valid values: .*mfeat, .*segment, watch"
    ):
        real.RealParameters.create(datasets=["mine"])
    user.add("mine", write_npz(tmp_path / "mine.npz"), labels="y")
    assert real.RealParameters.create(datasets=["mine"]).datasets == ("mine",)
    assert realpairs.RealPairsParameters.create(datasets=["mine", "segment"]).datasets == ("mine", "segment")
    tour = data_tour.DataTourParameters.create(datasets=["mine"])
    gap = data_tour.modality_gap(data_tour.load_all(tour.datasets), n_seeds=1).set_index("view")["value"]
    assert gap["accel"] > gap["gyro"], "accel carries the classes, gyro is noise"
    with pytest.raises(ValueError) as refused:
        realpairs.RealPairsParameters.create(datasets=["gaussian_venn"])
    valid = str(refused.value).split("valid values: ")[1].splitlines()[0].split(", ")
    assert "mine" in valid and "watch" in valid and "gaussian_venn" not in valid  # real data only
    assert main(["run", "02_mfh_real", "-p", "datasets", "['nope']"]) == 2
    error = capsys.readouterr().err
    assert "'datasets': ['nope'] not allowed; valid values: avmnist" in error and ", mine, " in error


@pytest.mark.parametrize(
    "pairs, message",
    [
        (["mine:accel"], "is not 'dataset:teacher>student'"),
        (["mine:accel>accel"], "two different modalities"),
        (["other:accel>gyro"], "names dataset 'other', which is not in datasets"),
    ],
)
def test_bad_pairs_are_refused(user_folder, tmp_path, pairs, message):
    user.add("mine", write_npz(tmp_path / "mine.npz"), labels="y")
    with pytest.raises(ValueError, match=message):
        real.RealParameters.create(datasets=["mine"], pairs=pairs)


def test_mfh_pairs_and_nets_come_from_parameters_defaults_or_shapes(user_folder, tmp_path):
    rng = np.random.default_rng(0)
    npz = write_npz(
        tmp_path / "shapes.npz",
        n=60,
        vector=rng.normal(size=(60, 5)),
        series=rng.normal(size=(60, 2, 16)),
        image=rng.normal(size=(60, 1, 8, 8)),
        accel=rng.normal(size=(60, 3)),
        gyro=rng.normal(size=(60, 3)),
        y=np.arange(60) % 3,
    )
    data = user.add("shapes", npz, labels="y")
    assert data.modality_names[:2] == ["accel", "gyro"]

    def pair(**options):
        chosen = real.choose_pair(real.RealParameters.create(datasets=["shapes"], **options), "shapes", data)
        return chosen.teacher_modality, chosen.student_modality, chosen.teacher.kind, chosen.student.kind

    assert pair() == ("accel", "gyro", "mlp", "mlp")  # no default: the first two modalities
    assert pair(pairs=["shapes:image>series"]) == ("image", "series", "cnn2d", "cnn1d")
    assert pair(pairs=["shapes:series>vector"]) == ("series", "vector", "cnn1d", "mlp")
    with pytest.raises(ValueError, match="has no modality 'depth'; its modalities are"):
        pair(pairs=["shapes:depth>vector"])
    assert (
        real.choose_pair(real.RealParameters.create(datasets=["mfeat"]), "mfeat", data) is real.DEFAULT_PAIRS["mfeat"]
    )


def test_ntdh_takes_every_ordered_pair_of_a_user_dataset(user_folder, tmp_path):
    user.add("mine", write_npz(tmp_path / "mine.npz"), labels="y")
    tasks = realpairs.make_tasks(realpairs.RealPairsParameters.create(datasets=["mine"], n_runs=1))
    assert [t.settings for t in tasks] == [
        {"dataset": "mine", "teacher_view": "accel", "student_view": "gyro", "n_classes": 3},
        {"dataset": "mine", "teacher_view": "gyro", "student_view": "accel", "n_classes": 3},
    ]


def test_one_unordered_pair_gives_a_verdict_not_an_error():
    """Two modalities give two ordered pairs but one unit (a → b and b → a share their NTD)."""
    pairs = pd.DataFrame(
        {
            "dataset": ["mine", "mine"],
            "teacher_view": ["accel", "gyro"],
            "student_view": ["gyro", "accel"],
            "n_classes": [3, 3],
            "teacher": [80.0, 75.0],
            "no_kd": [70.0, 72.0],
            "kd": [72.0, 71.0],
            "ntd": [0.2, 0.2],
            "delta": [2.0, -1.0],
        }
    )
    row = realpairs.claims_table(pairs).iloc[0]
    assert row["n_units"] == 1 and row["verdict"] == "not resolved"
    assert row["note"] == "1 unit: a correlation's interval needs at least 4"


# --- packages declare datasets by entry point ----------------------------------------------------


def test_entry_points_register_datasets_and_a_broken_one_names_itself(user_folder, tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    (tmp_path / "lab_package.py").write_text(
        "import numpy as np\n"
        "from cmkd_lab.datasets import from_arrays, register_dataset\n\n"
        "def register():\n"
        "    register_dataset('packaged', kind='package', description='declared by entry point')(\n"
        "        lambda: from_arrays({'a': np.ones((12, 2)), 'b': np.zeros((12, 3))}, np.arange(12) % 2, "
        "name='packaged'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    declared = [EntryPoint("lab", "lab_package:register", user.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(
        "importlib.metadata.entry_points", lambda group: declared if group == user.ENTRY_POINT_GROUP else []
    )
    user.load_entry_points()
    assert len(datasets.load("packaged")) == 12
    assert datasets.list_datasets().set_index("name").loc["packaged", "kind"] == "package"

    declared[:] = [EntryPoint("broken", "no_such_package:register", user.ENTRY_POINT_GROUP)]
    with pytest.raises(
        ImportError,
        match="entry point 'broken' \\(no_such_package:register\\) of group 'cmkd_lab.datasets' "
        "failed \\(ModuleNotFoundError",
    ):
        user.load_entry_points()


# --- large sets: mini-batches, progress, the record of each seed's split --------------------------


def test_large_sets_train_in_mini_batches_for_as_many_steps_as_full_batch():
    from cmkd_lab.studies.real_data import FULL_BATCH_LIMIT, MINI_BATCH, train_config
    from cmkd_lab.studies.runner import Task

    def tasks(n):
        data = datasets.from_arrays({"a": np.zeros((n, 2))}, np.arange(n) % 2)
        return [Task(datasets.Splits(data, None, data), 0, {})]

    small = train_config(tasks(FULL_BATCH_LIMIT), epochs=150, batch_size=None, lr=0.1)
    assert (small.batch_size, small.epochs, small.lr) == (None, 150, 0.1)
    large = train_config(tasks(7500), epochs=150, batch_size=None)
    steps_per_epoch = -(-7500 // MINI_BATCH)
    assert large.batch_size == MINI_BATCH and large.epochs == 3
    assert large.epochs * steps_per_epoch >= 150 > (large.epochs - 1) * steps_per_epoch
    chosen = train_config(tasks(7500), epochs=20, batch_size=500)
    assert (chosen.batch_size, chosen.epochs) == (500, 20)


def test_run_json_records_each_seeds_test_groups(user_folder, tmp_path):
    from cmkd_lab.analysis.results import save_results

    rng = np.random.default_rng(1)
    n = 240
    subjects = np.arange(n) % 8
    y = (np.arange(n) // 8) % 3
    npz = write_npz(
        tmp_path / "grouped.npz",
        n=n,
        y=y,
        subject=subjects,
        accel=rng.normal(size=(n, 6)) + y[:, None],
        gyro=rng.normal(size=(n, 4)) + y[:, None],
    )
    user.add("grouped", npz, labels="y", groups="subject")
    params = real.RealParameters.create(datasets=["grouped"], n_runs=3, epochs=3, alg1_repeats=1)
    run = real.run(params, progress=False)
    save_results(run.table, tmp_path / "out", run.log)
    splits = json.loads((tmp_path / "out" / "run.json").read_text())["splits"]
    assert [s["seed"] for s in splits] == [0, 1, 2] and {s["dataset"] for s in splits} == {"grouped"}
    test_groups = [set(s["test_groups"]) for s in splits]
    assert all(test_groups) and not any(a & b for i, a in enumerate(test_groups) for b in test_groups[i + 1 :])
    assert all(s["n_train"] + s["n_val"] + s["n_test"] == n for s in splits)


def test_progress_lines_say_when_a_fit_starts_and_ends(monkeypatch, capsys):
    from cmkd_lab.app import progress

    monkeypatch.setenv(progress.ENV_VAR, "lines")
    assert list(progress.progress_bar(range(3), "fit (2 models)", unit="epoch")) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "fit (2 models): started (3 epochs)" and re.fullmatch(
        r"fit \(2 models\): done, 3/3 in \d+\.\d s", lines[1]
    )
    assert list(progress.progress_lines(iter("ab"), "loop", every_s=0.0)) == ["a", "b"]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "loop: started" and [re.sub(r"\d+(\.\d)? s", "T", line) for line in lines[1:]] == [
        "loop: 1 after T",
        "loop: 2 after T",
        "loop: done, 2 in T",
    ]
    monkeypatch.setenv(progress.ENV_VAR, "loud")
    with pytest.raises(ValueError, match="CMKD_LAB_PROGRESS is 'loud'; choose one of \\['bar', 'lines', 'off'\\]"):
        progress.progress_mode()
    assert progress.progress_mode(False) == "off"


def test_bars_are_text_that_survives_saving_a_notebook(monkeypatch):
    """A bar is tqdm's plain text bar, never tqdm.auto's choice (a widget inside a kernel, which
    leaves 'model not found' on reopening a saved notebook)."""
    import tqdm.std

    from cmkd_lab.app import progress

    bar = progress.progress_bar(range(2), "fit", enabled=True)
    assert type(bar) is tqdm.std.tqdm and list(bar) == [0, 1]
