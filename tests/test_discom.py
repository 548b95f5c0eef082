"""DisCoM-KD: the system's loss terms, the released modality targets, unpaired feeding, the
quick profile's claims and results contract, clear errors, and the study on downloaded
datasets' fixtures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from cmkd_lab.analysis import claims
from cmkd_lab.datasets import load
from cmkd_lab.models import ModelSpec
from cmkd_lab.studies import runner as runner_module
from cmkd_lab.studies.discom import analysis, pipeline, study
from cmkd_lab.systems import DISCOM_TERMS, DisCoM, SumFusion, modality_loss

SPECS = {"a": ModelSpec("mlp", (6,), 3, (8,)), "b": ModelSpec("mlp", (5,), 3, (8,))}


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "x.a": torch.randn(n, 6, generator=g),
        "y.a": torch.randint(0, 3, (n,), generator=g),
        "x.b": torch.randn(n, 5, generator=g),
        "y.b": torch.randint(0, 3, (n,), generator=g),
    }


def modules_of(system, seed=0):
    return {name: module.train() for name, module in system.build(seed).items()}


def encoder_gradients(system, term, seed=0):
    modules = modules_of(system, seed)
    system.step(modules, batch())[1][term].backward()
    return {name: p.grad.clone() for name, p in modules["invariant_a"].named_parameters()}, modules[
        "discriminator"
    ].weight.grad


def test_gradient_reversal_flips_the_encoders_gradient_and_scales_it_by_lambda():
    plain, plain_discriminator = encoder_gradients(DisCoM(SPECS, width=4, grl_scale=-1.0), "adv")  # −(−1): no reversal
    for scale in (1.0, 0.3):
        reversed_, discriminator = encoder_gradients(DisCoM(SPECS, width=4, grl_scale=scale), "adv")
        for name, value in plain.items():
            assert torch.allclose(reversed_[name], -scale * value, atol=1e-6), name
        assert torch.allclose(discriminator, plain_discriminator)  # the discriminator itself learns unreversed


def test_every_term_is_logged_by_name_and_weighted_per_copy():
    system = DisCoM(SPECS, width=4, adv_weight=[1.0, 0.0])
    outputs, terms = system.step(modules_of(system), batch())
    assert set(terms) == set(DISCOM_TERMS) and set(outputs) == {"a", "b"}
    assert all(value.dim() == 0 and torch.isfinite(value) for value in terms.values())
    assert system.weights()["adv"] == [1.0, 0.0]
    assert set(system.heads()) == {"a", "b"}
    assert system.heads()["a"].modules == ("invariant_a", "specific_a", "classifier_a")


def test_released_modality_targets_are_read_as_class_probabilities():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    # PyTorch reads float targets shaped like the logits as class probabilities
    assert torch.allclose(modality_loss(logits, 0, "as_released"), F.cross_entropy(logits, torch.ones_like(logits)))
    assert torch.allclose(modality_loss(logits, 1, "as_released"), F.cross_entropy(logits, torch.zeros_like(logits)))
    assert modality_loss(logits, 1, "as_released") == 0  # the second modality's rows teach nothing
    for modality in (0, 1):
        expected = F.cross_entropy(logits, torch.full((3,), modality))
        assert torch.allclose(modality_loss(logits, modality, "class_index"), expected)
    with pytest.raises(ValueError, match="unknown modality_targets 'soft'; valid: class_index, as_released"):
        modality_loss(logits, 0, "soft")


def test_class_index_and_released_targets_give_different_losses_on_a_fixed_batch():
    fixed = batch(seed=3)
    paper, released = DisCoM(SPECS, width=4), DisCoM(SPECS, width=4, modality_targets="as_released")
    modules = modules_of(paper)
    with torch.no_grad():  # confident modality heads: at uniform predictions both readings give ln 2
        for name in ("discriminator", "modality_d", "modality_u"):
            modules[name].weight.mul_(20)
    paper_terms, released_terms = paper.step(modules, fixed)[1], released.step(modules, fixed)[1]
    for term in ("mod", "adv"):
        assert abs(paper_terms[term].item() - released_terms[term].item()) > 0.05, term
    for term in ("cl", "aux", "orth"):
        assert torch.allclose(paper_terms[term], released_terms[term])


def test_absolute_orthogonality_changes_only_the_orthogonality_term():
    signed, absolute = DisCoM(SPECS, width=4), pipeline.AbsoluteCosineDisCoM(SPECS, width=4)
    modules = modules_of(signed)
    _, plain = signed.step(modules, batch())
    _, terms = absolute.step(modules, batch())
    for term in DISCOM_TERMS:
        if term != "orth":
            assert torch.allclose(terms[term], plain[term]), term
    expected = 0.0
    for m in ("a", "b"):
        s, d, u = absolute.features(modules, m, batch()[f"x.{m}"])
        expected = (
            expected + F.cosine_similarity(d, u, dim=-1).abs().mean() + F.cosine_similarity(d, s, dim=-1).abs().mean()
        )
    assert torch.allclose(terms["orth"], expected / 2) and not torch.allclose(terms["orth"], plain["orth"])
    assert absolute.config()["orthogonality"] == "absolute"
    with pytest.raises(ValueError, match="unknown orthogonality 'square'; valid: signed, absolute"):
        study.DisCoMParameters.create(real=()).discom(SPECS, orthogonality="square")


def test_discom_takes_any_number_of_modalities_and_cnn_encoders():
    specs = {
        "img": ModelSpec("cnn2d", (2, 6, 6), 3, (4,)),
        "seq": ModelSpec("cnn1d", (3, 8), 3, (4,)),
        "vec": ModelSpec("mlp", (5,), 3, (8,)),
    }
    system = DisCoM(specs, width=4)
    data = {
        "x.img": torch.randn(8, 2, 6, 6),
        "x.seq": torch.randn(8, 3, 8),
        "x.vec": torch.randn(8, 5),
        **{f"y.{m}": torch.randint(0, 3, (8,)) for m in specs},
    }
    modules = modules_of(system)
    terms = system.step(modules, data)[1]
    assert modules["discriminator"].out_features == 3 and torch.isfinite(terms["adv"])
    fusion = SumFusion(specs, width=6)
    assert fusion.predict(modules_of(fusion), {**data, "y": data["y.img"]})["fusion"].shape == (8, 3)
    with pytest.raises(ValueError, match="DisCoM needs at least two modalities"):
        DisCoM({"a": SPECS["a"]})


def test_unpaired_feeding_has_no_fixed_pairing_between_the_modalities(monkeypatch):
    """Each modality's rows carry their index; the batches DisCoM trains on pair them at random."""
    n = 60
    data = load("discom_modalities", seed=0, n_samples=n * 10 // 7 + 3)
    st = pipeline.stack_tasks(pipeline.make_tasks(data, ["a", "b"], 2, "synthetic"), ["a", "b"])
    n_train = st.x["train"]["a"].shape[1]
    for m in st.modalities:  # feature 0 = the row's index: the pairing is visible in every batch
        st.x["train"][m][..., 0] = torch.arange(n_train, dtype=torch.float32)
    seen = []
    engine_fit = runner_module.fit

    def recording_fit(*args, **kwargs):  # the engine's augment hook sees each training batch as fed
        record = lambda b, generators: seen.append((b["x.a"][..., 0].clone(), b["x.b"][..., 0].clone())) or b  # noqa: E731
        return engine_fit(*args, **kwargs, augment=record)

    monkeypatch.setattr(runner_module, "fit", recording_fit)  # StudyRunner.fit calls the engine's fit
    protocol = pipeline.Protocol(epochs=3, batch_size=8, width=4)
    runner = runner_module.StudyRunner("t", progress=False)
    pipeline.run_discom(
        runner,
        st,
        pipeline.backbone_specs(st, {m: study.ModelSpec("mlp", hidden=(8,)) for m in st.modalities}),
        protocol,
    )
    assert [fit["method"] for fit in runner.result().log.fits] == ["discom"]
    ids_a, ids_b = torch.cat([a for a, _ in seen], 1), torch.cat([b for _, b in seen], 1)
    assert ids_a.shape[1] >= 3 * n_train  # every epoch saw every row of each modality
    same_row = (ids_a == ids_b).float().mean()
    assert same_row < 0.15, f"{same_row:.2f} of batch positions pair a row with its own partner"
    for copy in range(ids_a.shape[0]):  # and the pairing changes from epoch to epoch
        partners = {}
        for a, b in zip(ids_a[copy].tolist(), ids_b[copy].tolist()):
            partners.setdefault(a, set()).add(b)
        assert np.mean([len(p) for p in partners.values()]) > 1.5


# ----------------------------------------------------------------------------- the quick profile
@pytest.fixture(scope="module")
def quick_run():
    params = study.DisCoMParameters.create(real=())
    return params, study.run(params, progress=False)


def test_the_results_contract(quick_run):
    params, run = quick_run
    table = run.table
    assert set(table["study"]) == {"discom_synthetic", "discom_ablation"}
    assert set(table.loc[table["study"] == "discom_synthetic", "method"]) == set(pipeline.METHODS)
    assert set(table.loc[table["study"] == "discom_ablation", "method"]) == set(pipeline.ABLATIONS)
    assert set(table["metric"]) == {"test_f1w", "test_acc", "domain_acc_s", "domain_acc_u"}
    assert set(table["modality"]) == {"a", "b", pipeline.ALL_MODALITIES} and set(table["n_classes"]) == {4}
    keys = ["study", "method", "modality", "metric", "alpha"]
    per_cell = table.fillna({"alpha": -1}).groupby(keys)["seed"]
    assert (per_cell.size() == params.n_splits).all() and (
        per_cell.nunique() == params.n_splits
    ).all()  # one row per split
    assert table["value"].between(0, 1).all()
    assert sorted(table.loc[table["method"] == "fusion_kd", "alpha"].unique()) == [0.0, 0.5]
    history = run.artifacts.fits["discom"][0].history  # every loss term logged by name, per epoch and copy
    assert set(DISCOM_TERMS) | {"total", "val_weighted_f1/a", "val_weighted_f1/b"} <= set(history)
    assert history["adv"].shape == (params.epochs, 5 * params.n_splits)  # the full model and four ablations


def test_the_ablation_table_has_every_row(quick_run):
    _, run = quick_run
    ablations = analysis.ablation_table(run.table)
    assert list(ablations.index) == ["discom", *pipeline.ABLATIONS]
    assert {"test_f1w · a", "test_f1w · b", "domain_acc_s", "domain_acc_u"} <= set(ablations.columns)
    assert ablations.loc[["discom", "no_adv", "as_released"], "domain_acc_s"].notna().all()


def test_irrelevant_features_show_the_modality_and_invariant_ones_far_less(quick_run):
    _, run = quick_run
    domain = analysis.domain_accuracies(run.table)
    assert domain["u"] > 0.90, domain
    assert domain["s"] < domain["u"] - 0.15, domain


def test_every_claim_is_judged_by_the_rule_against_every_baseline_and_modality(quick_run):
    """Paper claims: DisCoM-KD against single, fusion KD at each α, fusion DKD and cross-modal KD at
    each α, per modality, on the splits' paired margins; the invariance of s. Then the finding and
    the checks, never counted as support."""
    params, run = quick_run
    table = analysis.claims_table(run.table)
    assert list(table.columns) == list(claims.COLUMNS)
    assert set(table["verdict"]) <= set(claims.VERDICTS)
    paper = table[table["kind"] == "paper"]
    baselines = [
        "single",
        "fusion_kd (α=0)",
        "fusion_kd (α=0.5)",
        "fusion_dkd",
        "crossmodal_kd (α=0)",
        "crossmodal_kd (α=0.5)",
    ]
    expected = [f"discom_modalities · {m} vs {b}" for m in ("a", "b") for b in baselines]
    assert paper["setting"].tolist() == [*expected, "discom_modalities (chance 50 %)"]
    assert (paper["n_units"] == params.n_splits).all() and paper["p_adjusted"].notna().all()
    f1 = run.table[(run.table["study"] == "discom_synthetic") & (run.table["metric"] == "test_f1w")]
    single = f1[f1["method"] == "single"].set_index(["modality", "seed"])["value"]
    discom = f1[f1["method"] == "discom"].set_index(["modality", "seed"])["value"]
    margin = paper.set_index("setting").loc["discom_modalities · b vs single", "estimate"]
    assert margin == pytest.approx(100 * (discom - single).loc["b"].mean())  # paired by split, in points
    domain = analysis.domain_accuracies(run.table)
    invariance = paper.iloc[-1]
    assert invariance["estimate"] == pytest.approx(100 * (domain["s"] - domain["chance"]))
    assert invariance["verdict"] != "held"  # a fresh classifier still finds the modality in s (see above)
    assert table.loc[table["kind"] == "finding", "setting"].tolist() == [f"discom_modalities · {m}" for m in ("a", "b")]
    checks = table[table["kind"] == "check"]
    assert checks["claim"].tolist() == [analysis.U_CARRIES_MODALITY.claim, analysis.ADVERSARY_HIDES_MODALITY.claim]
    assert checks.iloc[0]["verdict"] == "held"  # u tells the modalities apart (asserted above: > 90 %)


def test_a_comparison_with_a_model_at_chance_is_not_resolved():
    """Weighted F1 margins far above the sesoi, but the baseline's test accuracy within 5 points of
    1/K: the row is not resolved, and its note says which model and how close to chance."""
    rows = []
    for seed in range(4):
        for method, f1, acc in (("discom", 0.80, 0.80), ("single", 0.30, 0.28)):
            for metric, value in (("test_f1w", f1 + 0.01 * seed), ("test_acc", acc)):
                rows.append(
                    {
                        "study": "s",
                        "method": method,
                        "dataset": "d",
                        "n_classes": 4,
                        "modality": "a",
                        "seed": seed,
                        "metric": metric,
                        "value": value,
                    }
                )
    row = claims.table(analysis.baseline_rows(pd.DataFrame(rows), "s")).iloc[0]
    assert row["setting"] == "d · a vs single" and row["estimate"] == pytest.approx(50.0)
    assert row["verdict"] == "not resolved" and "single: test accuracy 28.0 %, chance 25.0 %" in row["note"]


def test_discom_learns_both_modalities_and_the_released_targets_are_compared_split_by_split(quick_run):
    _, run = quick_run
    f1 = run.table[(run.table["metric"] == "test_f1w") & (run.table["study"] == "discom_synthetic")]
    means = f1.groupby(["method", "modality"])["value"].mean()
    for m in ("a", "b"):
        assert means[("discom", m)] > 0.6 and means[("single", m)] > 0.6  # chance is 0.25
    effect = analysis.released_targets_effect(run.table)
    assert set(effect["metric"]) == {"test_f1w", "test_acc", "domain_acc_s", "domain_acc_u"}


def test_method_table_and_embedding_figure(quick_run):
    params, run = quick_run
    table = analysis.method_table(run.table, "discom_synthetic")
    assert list(table.columns)[:2] == ["discom", "single"] and "fusion_kd (α=0.5)" in table.columns
    features = study.embedding_features(params, run)
    fig = analysis.embedding_figure(features, "t").to_dict()
    assert len(fig["data"]) == 6 and {t["name"] for t in fig["data"]} == {"modality a", "modality b"}


# ----------------------------------------------------------------------------- errors and other data
def test_bad_input_is_a_clear_error_naming_the_valid_options():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*mfeat"):
        study.DisCoMParameters.create(real=["nope:a,b"])
    with pytest.raises(ValueError, match="is not 'dataset' or 'dataset:mod1,mod2"):
        study.DisCoMParameters.create(real=["segment:colour"])
    with pytest.raises(ValueError, match="has no modality 'depth'; its modalities are \\['colour', 'shape'\\]"):
        study.real_tasks(study.DisCoMParameters.create(real=["segment:colour,depth"], n_splits=1))
    data = load("discom_modalities", n_samples=300)
    tasks = pipeline.make_tasks(data, ["a", "b"], 1, "synthetic")
    with pytest.raises(
        ValueError, match="unknown method\\(s\\) \\['fusion_mlkd'\\]; valid methods: discom, single.*left out"
    ):
        pipeline.run_dataset(
            runner_module.StudyRunner("t"), tasks, ["a", "b"], {}, pipeline.Protocol(), methods=("fusion_mlkd",)
        )
    with pytest.raises(ValueError, match="modality_targets.*valid values: class_index, as_released"):
        study.DisCoMParameters.create(modality_targets="soft")


@pytest.mark.parametrize("which", ["eurosat", "nyu"])
def test_downloaded_datasets_fixtures_run_by_name(which, tmp_path, monkeypatch):
    """EuroSAT-MS-SAR (ms, sar) and NYU Depth V2 (rgb, depth) from their download fixtures reach
    the study by parameter, unchanged, with 2-D CNN encoders."""
    from test_data_scripts import convert, make_eurosat_raw, make_nyu_raw

    from cmkd_lab.datasets import cache, eurosat_ms_sar, nyu_depth_v2

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "data"))
    if which == "eurosat":
        make_eurosat_raw(tmp_path / "raw", per_class=10)
        convert(
            eurosat_ms_sar.EUROSAT_MS_SAR, tmp_path / "raw", tmp_path / "data", "--size", "4", "--max-per-class", "10"
        )
        item, modalities = "eurosat_ms_sar:ms,sar", {"ms", "sar"}
    else:
        make_nyu_raw(tmp_path / "raw")
        convert(
            nyu_depth_v2.NYU_DEPTH_V2,
            tmp_path / "raw",
            tmp_path / "data",
            "--height",
            "6",
            "--width",
            "8",
            "--n-scene-classes",
            "2",
            "--chunk",
            "5",
        )
        item, modalities = "nyu_depth_v2:rgb,depth", {"rgb", "depth"}
        # the 13-image fixture has two scenes of its first class, too few for a 3-part split by
        # scene; the study itself runs unchanged on the samples without their scene groups
        loader = study.load
        monkeypatch.setattr(study, "load", lambda name, **kw: dataclasses.replace(loader(name, **kw), groups=None))
    params = study.DisCoMParameters.create(synthetic=False, real=[item], n_splits=2, epochs=2, width=4, batch_size=16)
    run = study.run(params, progress=False)
    table = run.table
    assert set(table["study"]) == {"discom_real"} and set(table["method"]) == set(pipeline.METHODS)
    assert (
        modalities <= set(table["modality"]) <= modalities | {pipeline.ALL_MODALITIES} and table["value"].notna().all()
    )
    discom_fit = run.artifacts.fits["discom"][0]
    assert {spec.kind for spec in discom_fit.system.specs.values()} == {"cnn2d"}


def test_explore_reruns_discom_with_new_weights(monkeypatch):
    monkeypatch.setattr(study, "EXPLORE_SCALE", {**study.EXPLORE_SCALE, "epochs": 2, "n_samples": 300})
    fig = study.explore_figure(study.DisCoMParameters.create(), 1.0, 1.0, 0.0, 0.5, 1.0, 2.0).to_dict()
    assert "mod 0, adv 0.5, orth 1; GRL λ 2" in fig["layout"]["title"]["text"]
    assert set(fig["data"][0]["x"]) == {
        "test_f1w · a",
        "test_f1w · b",
        "test_acc · a",
        "test_acc · b",
        "domain_acc_s · all",
        "domain_acc_u · all",
    }


def test_discom_variants_report_cosines_and_both_domain_accuracies():
    params = study.DisCoMParameters.create(real=(), n_splits=1, epochs=2, n_samples=400, width=4, hidden=8)
    run = study.discom_variants(
        params, {"signed": {}, "absolute": {"orthogonality": "absolute"}, "λ = 3": {"grl_scale": 3.0}}
    )
    table = run.table
    assert [(fit["study"], fit["method"]) for fit in run.log.fits] == [
        ("discom_variants", name) for name in ("signed", "absolute", "λ = 3")
    ]
    assert run.log.fits[1]["system"]["orthogonality"] == "absolute"
    assert list(dict.fromkeys(table["method"])) == ["signed", "absolute", "λ = 3"]
    means = analysis.variant_means(table)
    assert {"test_f1w · a", "test_f1w · b", "domain_acc_s", "discriminator_acc_s", "cos_ds", "cos_du"} <= set(
        means.columns
    )
    assert means[["domain_acc_s", "discriminator_acc_s"]].stack().between(0, 1).all()
    assert means[["cos_ds", "cos_du"]].stack().between(-1, 1).all()
    assert analysis.baseline_rows(table.assign(study="x"), "x") == []  # no baselines here: no claim rows
