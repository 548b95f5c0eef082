"""The data tour notebook, executed in the quick profile: the modality gap it records."""

from cmkd_lab.analysis.results import paper_vs_kit, summarize
from cmkd_lab.studies import data_tour


def test_data_tour_records_every_view_and_the_gaps(executed):
    table = executed.results("01_data_tour")
    assert set(table["study"]) == {"data_tour"} and set(table["metric"]) == {"test_acc"}
    assert table.groupby(["dataset", "view"])["seed"].nunique().eq(2).all()
    assert len(table.groupby(["dataset", "view"])) == 6 + 2 + 2
    means = table.groupby(["dataset", "view"])["value"].mean()
    assert means["mfeat", "profile"] > means["mfeat", "morphological"] + 0.15
    assert means["segment", "colour"] > means["segment", "shape"] + 0.15
    assert means["watch", "accel"] > means["watch", "gyro"] + 0.05
    compared = paper_vs_kit(summarize(table, by=["dataset", "view", "metric"]), data_tour.paper_values(),
                            on=["dataset", "view", "metric"], tolerance=data_tour.TOLERANCE_POINTS)
    offline_sets = compared[compared["dataset"].isin(["mfeat", "segment"])]
    assert offline_sets["within_tolerance"].all(), offline_sets
    folder = executed.folder("01_data_tour")
    assert {"mfeat_pixels.html", "watch_imu.html", "modality_gap.html"} <= {p.name for p in folder.iterdir()}


def test_pair_gaps_rank_every_ordered_pair_and_the_paper_table_labels_each_view(executed):
    table = executed.results("01_data_tour")
    gaps = data_tour.pair_gaps(table, "mfeat")
    assert len(gaps) == 30 and gaps["gap"].is_monotonic_decreasing
    assert ((gaps["gap"] - (gaps["teacher_acc"] - gaps["student_acc"])).abs() < 0.011).all()
    compared = data_tour.paper_table(table, ["mfeat", "segment"])
    assert list(compared.columns[:3]) == ["dataset", "view", "paper"] and set(compared["dataset"]) == {"mfeat", "segment"}


def test_sample_figure_shows_every_view_of_one_sample():
    loaded = data_tour.load_all(["watch"])
    fig = data_tour.sample_figure(loaded, "watch", 5)
    assert len(fig.to_dict()["data"]) == 6  # accel x/y/z and gyro x/y/z
    assert "sample 5" in fig.layout.title.text
