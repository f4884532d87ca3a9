"""A multi-objective run end to end on real images with a real out-of-distribution set: the
front (pareto.csv, front heads, figures), the selected head, the ensemble, and the messages."""

import csv
import json

import numpy as np
import pytest

from evoprune.cli import main
from evoprune.runs.store import hex_to_mask


@pytest.fixture(scope="module")
def ood_folder(tmp_path_factory):
    """40 crops of scikit-image's bundled photos, as a folder of PNG files."""
    from pathlib import Path

    from evoprune.data.ood_images import write_ood_images

    src = tmp_path_factory.mktemp("ood-src")
    folder = tmp_path_factory.mktemp("ood")
    for p in write_ood_images("photos", src)[:40]:
        (folder / Path(p).name).write_bytes(Path(p).read_bytes())
    return folder


@pytest.fixture(scope="module")
def mo_run(tmp_path_factory, faces_folder, feature_cache, ood_folder):
    out = tmp_path_factory.mktemp("mo") / "run"
    args = [
        "run",
        "--data",
        str(faces_folder),
        "--objectives",
        "accuracy,size,ood",
        "--ood",
        str(ood_folder),
        "--population",
        "6",
        "--evaluations",
        "18",
        "--seed",
        "2",
        "--out",
        str(out),
        "--cache-dir",
        str(feature_cache),
        "--no-progress",
    ]
    assert main(args) == 0
    return out, json.loads((out / "result.json").read_text())


def test_the_front_is_written_and_the_selected_head_is_the_runs_head(mo_run):
    out, result = mo_run
    assert result["algorithm"] == "nsga2" and result["select"] == "one-se"
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) == len(result["front"]) >= 1
    assert [r["selected"] for r in rows].count("True") == 1
    chosen = next(r for r in rows if r["selected"] == "True")
    assert list(hex_to_mask(chosen["mask"], result["genes"])) == result["best_mask"]
    assert float(chosen["test_accuracy"]) == result["test_accuracy"]
    sizes = [float(r["active_fraction"]) for r in rows]
    assert sizes == sorted(sizes)
    for r in rows:
        assert 0 <= float(r["test_auroc"]) <= 1 and 0 <= float(r["test_fpr95"]) <= 1
        assert (out / "front" / f"head_{r['rank']}.safetensors").is_file()
    # no front member is dominated by another on the search's objectives
    F = np.array(
        [
            [1 - float(r["fitness"]), float(r["active_fraction"]), 1 - float(r["fitness_auroc"])]
            for r in rows
        ]
    )
    for i in range(len(F)):
        assert not any((F[j] <= F[i]).all() and (F[j] < F[i]).any() for j in range(len(F)))
    header = next(csv.reader((out / "history.csv").open()))
    assert "auroc" in header and "hypervolume" in header
    for name in ("pareto.png", "hypervolume.png", "convergence.png"):
        assert (out / name).stat().st_size > 1000


def test_show_and_load_use_the_selected_head(mo_run):
    import evoprune

    out, result = mo_run
    clf = evoprune.load(out)
    assert list(clf.best_mask_) == result["best_mask"]


def test_ensemble_of_front_heads(mo_run, feature_cache, capsys):
    out, result = mo_run
    k = min(2, len(result["front"]))
    assert (
        main(
            [
                "ensemble",
                str(out),
                "--members",
                str(k),
                "--cache-dir",
                str(feature_cache),
                "--no-progress",
            ]
        )
        == 0
    )
    doc = json.loads((out / "ensemble.json").read_text())
    assert len(doc["members"]) == k and 0 <= doc["test_accuracy"] <= 1
    assert doc["not_pruned_test_accuracy"] == result["reference_test_accuracy"]
    printed = capsys.readouterr().out
    assert "test_auroc" in doc and "held-out accuracy: ensemble" in printed
    # its size against the not-pruned head's, in ensemble.json and on screen
    assert doc["not_pruned_params"] == result["reference_head_params"]
    share = doc["ensemble_params"] / doc["not_pruned_params"]
    assert f"{share:.1%} of the not-pruned head's {result['reference_head_params']:,}" in printed


def test_any_front_member_loads_exports_and_predicts_by_rank(
    mo_run, feature_cache, faces_folder, tmp_path, capsys
):
    """--rank N (evoprune.load(rank=N)): each member's held-out accuracy, recomputed from the
    loaded model, is the one the run recorded for that member."""
    import evoprune
    from evoprune.export import export_model
    from evoprune.runs.experiment import prepare_data
    from evoprune.runs.store import open_run

    out, result = mo_run
    data = prepare_data(open_run(out).settings(), progress=False, cache_dir=feature_cache)
    truth = np.asarray(data.classes)[data.y_test]
    for member in result["front"]:
        rank = int(member["rank"])
        clf = evoprune.load(out, rank=rank)
        assert list(clf.best_mask_) == list(hex_to_mask(member["mask"], result["genes"]))
        accuracy = float((clf.predict(data.X_test) == truth).mean())
        assert accuracy == pytest.approx(member["test_accuracy"])
        exported = export_model(out, tmp_path / f"m{rank}.onnx", head_only=True, rank=rank)
        assert exported.metadata["head_params"] == member["head_params"]
        assert exported.metadata["head"].startswith(f"front rank {rank}")
    smallest = int(result["front"][0]["rank"])
    images = sorted(str(p) for p in (faces_folder / "face").glob("*.png"))[:3]
    capsys.readouterr()
    assert main(["predict", str(out), *images, "--rank", str(smallest), "--no-progress"]) == 0
    expected = evoprune.load(out, rank=smallest).predict(images)
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    for image, label in zip(images, expected):
        assert any(image in line and f" {label} " in line for line in lines), (image, label)
    assert main(["export", str(out), "--rank", str(smallest), "--format", "onnx"]) == 0
    assert (out / f"model_rank{smallest}.onnx").is_file()
    (out / f"model_rank{smallest}.onnx").unlink()
    (out / f"model_rank{smallest}.onnx.json").unlink()


def test_a_bad_rank_is_one_message(mo_run, tiny_run, caplog, tmp_path):
    out, result = mo_run
    ranks = [int(m["rank"]) for m in result["front"]]
    bad = str(max(ranks) + 1)
    target = str(tmp_path / "m.onnx")
    assert main(["export", str(out), "--rank", bad, "--out", target]) == 2
    assert f"ranks {min(ranks)} to {max(ranks)}" in caplog.text and "pareto.csv" in caplog.text
    assert main(["predict", str(tiny_run[0]), "x.png", "--rank", "0"]) == 2
    assert "single-objective run" in caplog.text
    assert main(["export", str(out), "--rank", "0", "--reference", "--out", target]) == 2
    assert "exclude each other" in caplog.text


def test_ensemble_errors(mo_run, tiny_run, feature_cache, caplog):
    out, result = mo_run
    n = len(result["front"])
    assert main(["ensemble", str(out), "--members", str(n + 1)]) == 2
    assert f"has {n} heads" in caplog.text
    assert main(["ensemble", str(tiny_run[0])]) == 2
    assert "single-objective run" in caplog.text


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--objectives", "accuracy,speed"], "speed"),
        (["--objectives", "accuracy,size,ood"], "--ood"),
        (["--select", "knee"], "more than one objective"),
        (["--algorithm", "ssga", "--objectives", "accuracy,size"], "ssga"),
    ],
)
def test_bad_multiobjective_options_get_one_message(faces_folder, tmp_path, caplog, extra, match):
    out = tmp_path / "run"
    assert main(["run", "--data", str(faces_folder), "--out", str(out), *extra]) == 2
    assert match in caplog.text and not out.exists()


def test_an_empty_ood_folder_is_refused(faces_folder, feature_cache, tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--data",
                str(faces_folder),
                "--objectives",
                "accuracy,size,ood",
                "--ood",
                str(empty),
                "--population",
                "4",
                "--evaluations",
                "4",
                "--out",
                str(out),
                "--cache-dir",
                str(feature_cache),
                "--no-progress",
            ]
        )
        == 2
    )
    assert str(empty) in caplog.text and not out.exists()


def test_the_ensembles_onnx_model_matches_the_library(
    mo_run, feature_cache, faces_folder, tmp_path
):
    ort = pytest.importorskip("onnxruntime")
    from PIL import Image

    from evoprune.backbones import get_backbone
    from evoprune.model.head import predict_proba
    from evoprune.runs.store import load_head

    out, result = mo_run
    k = min(2, len(result["front"]))
    model = tmp_path / "ensemble.onnx"
    assert (
        main(
            [
                "ensemble",
                str(out),
                "--members",
                str(k),
                "--export",
                str(model),
                "--cache-dir",
                str(feature_cache),
                "--no-progress",
            ]
        )
        == 0
    )
    members = json.loads((out / "ensemble.json").read_text())["members"]
    meta = json.loads((tmp_path / "ensemble.onnx.json").read_text())
    assert meta["members"] == members and len(meta["head_sizes"]) == k
    backbone = get_backbone(result["backbone"])
    paths = sorted((faces_folder / "face").iterdir())[:4]
    batch = np.stack([backbone.preprocess(Image.open(p)) for p in paths]).astype(np.float32)
    got = ort.InferenceSession(str(model)).run(None, {"images": batch})[0]
    feats = backbone.features(batch)
    heads = [
        load_head(out / "front" / f"head_{m}.safetensors", result["feature_dim"]) for m in members
    ]
    want = np.mean([predict_proba(h, feats) for h in heads], axis=0)
    assert np.abs(got - want).max() < 1e-4


def test_final_check_candidates_cover_every_size_band_even_when_fitness_saturates():
    """On a small fitness split accuracy saturates: the fitness front keeps only the smallest
    head at 1.0, so the final check must still re-score the best head of every size band."""
    from types import SimpleNamespace

    from evoprune.pareto import non_dominated
    from evoprune.runs.front import size_band_rows

    genes = [1, 2, 3, 5, 8, 13, 21, 40, 64, 100, 128, 256, 300]
    fitness = [0.5, 0.7, 1.0, 1.0, 0.9, 1.0, 1.0, 0.95, 1.0, 1.0, 0.99, 1.0, 1.0]
    history = [
        SimpleNamespace(fitness=f, active_genes=g, index=i)
        for i, (f, g) in enumerate(zip(fitness, genes))
    ]
    search = SimpleNamespace(history=history, rows=lambda: range(len(history)))
    F = np.column_stack([1 - np.array(fitness), genes])
    assert [genes[i] for i in np.flatnonzero(non_dominated(F))] == [1, 2, 3]

    rows = size_band_rows(search, 4)  # bands of 300 ** (1/4) = 4.16x: (1, 4.2], ..., (72, 300]
    edges = np.geomspace(1, 300, 5)
    assert len(rows) == 4 and rows == sorted(rows)
    for b, i in enumerate(rows):
        lo, hi = edges[b], edges[b + 1]
        band = [j for j, g in enumerate(genes) if (lo < g <= hi) or (b == 0 and g == lo)]
        assert i in band
        best = max(fitness[j] for j in band)
        # the best by fitness, ties to the fewest genes
        assert fitness[i] == best and genes[i] == min(genes[j] for j in band if fitness[j] == best)
    assert genes[rows[-1]] == 100  # a large head the front alone would never re-score


def test_asked_sizes_make_the_final_check_rescore_the_best_heads_at_or_below_each():
    from types import SimpleNamespace

    from evoprune.runs.front import sized_rows

    genes = [1, 3, 5, 9, 10, 11, 20, 30, 45, 80]
    fitness = [0.5, 0.6, 0.7, 0.74, 0.8, 0.81, 0.85, 0.86, 0.9, 0.91]
    history = [
        SimpleNamespace(fitness=f, active_genes=g, index=i)
        for i, (f, g) in enumerate(zip(fitness, genes))
    ]
    search = SimpleNamespace(history=history, rows=lambda: range(len(history)))
    # 100 genes; sizes 10 % and 30 %: the 2 best (4 // 2) at or below 10 and 30 genes
    rows = sized_rows(search, (0.3, 0.1), 100, 4)
    assert [genes[i] for i in rows] == [9, 10, 20, 30]
    assert all(genes[i] <= 30 for i in rows)
    assert sized_rows(search, (0.01,), 100, 16) == [0]  # one gene: the only head that small


def test_an_estimator_with_sizes_offers_a_front_head_at_or_below_each(feature_cache):
    """A two-objective search asked for 10 % and 25 % of 64 features: the front holds a head of
    at most 6 and one of at most 16 features, and nothing above 16."""
    clf = _fit_digits(sizes=(0.1, 0.25))
    active = np.asarray(clf.pareto_["mask"]).sum(axis=1)
    assert active.min() <= 6 and active.max() <= 16
    start = [r for r in clf.search_.history[:8]]
    assert {r.active_genes for r in start} >= {6, 16}  # every ranking's top-k at those sizes


def test_cross_validated_ties_are_broken_by_the_probability_of_the_true_class():
    from evoprune.pareto import non_dominated
    from evoprune.runs.front import tie_broken

    cv = np.array([1.0, 1.0, 0.9975, 0.99750000000001])  # the last two: one value, float noise
    prob = np.array([0.90, 0.97, 0.99, 0.50])
    score = tie_broken(cv, prob)
    assert score[1] > score[0]  # equal accuracy: the surer head first
    assert score[0] > score[2]  # never above a higher accuracy, however sure
    assert score[2] > score[3]  # equal to 9 decimals is a tie
    # a larger head of equal accuracy stays on the front when it is surer of the right class
    F = np.column_stack([1 - score[:2], [5, 40]])
    assert non_dominated(F).tolist() == [True, True]
    assert non_dominated(np.column_stack([1 - cv[:2], [5, 40]])).tolist() == [True, False]


def test_ranked_rows_are_the_rankings_top_k_at_each_asked_size_whatever_scored_them():
    from types import SimpleNamespace

    from evoprune.runs.front import ranked_rows
    from evoprune.search.guided import top_k

    rankings = {"a": np.arange(20.0), "b": -np.arange(20.0)}

    def rec(mask, fidelity):
        m = np.asarray(mask, dtype=np.uint8)
        return SimpleNamespace(mask=lambda m=m: m, fidelity=fidelity, active_genes=int(m.sum()))

    a2, b2, a4 = top_k(rankings["a"], 2), top_k(rankings["b"], 2), top_k(rankings["a"], 4)
    other = np.zeros(20, dtype=bool)
    other[[0, 5, 9, 13]] = True
    history = [rec(a2, "shared"), rec(b2, "shared"), rec(other, "full"), rec(a2, "full")]
    history += [rec(a4, "shared")]
    search = SimpleNamespace(
        history=history, rows=lambda: [i for i, r in enumerate(history) if r.fidelity == "full"]
    )
    # 10 % and 20 % of 20 genes: k = 2 and 4; b's top-4 was never evaluated and is left out
    rows = ranked_rows(search, rankings, (0.1, 0.2), 20)
    assert rows == [1, 3, 4]  # a's top-2 by its full row, b's top-2 and a's top-4 by shared
    assert ranked_rows(search, rankings, (0.5,), 20) == []


def test_with_sizes_the_final_check_rescores_every_rankings_top_k_even_unpromoted(
    feature_cache, monkeypatch
):
    """A multi-fidelity search asked for 10 % and 25 %: the final check re-scores every
    ranking's top-k at both sizes, those scored by the shared head only included, and the
    front's tie-breaking probabilities are reported."""
    from evoprune.runs import front
    from evoprune.search.guided import top_k

    seen = {}
    check, ranked = front.check_scores, front.ranked_rows

    def spy_check(cfg, evolved, X, y, rows, progress=False, rankings=None):
        seen["rows"], seen["history"] = list(rows), evolved.result.history
        seen["check_rankings"] = rankings
        return check(cfg, evolved, X, y, rows, progress, rankings)

    def spy_ranked(search, rankings, sizes, n_genes):
        seen["rankings"] = rankings
        return ranked(search, rankings, sizes, n_genes)

    monkeypatch.setattr(front, "check_scores", spy_check)
    monkeypatch.setattr(front, "ranked_rows", spy_ranked)
    clf = _fit_digits(
        population=10, evaluations=10, fidelity="multi", shared_evaluations=60, sizes=(0.1, 0.25)
    )
    history, rows = seen["history"], seen["rows"]
    masks = {history[i].mask().astype(bool).tobytes(): i for i in rows}
    wanted = {top_k(s, k).tobytes() for k in (6, 16) for s in seen["rankings"].values()}
    assert wanted <= set(masks)  # every ranking's top-k at both sizes was re-scored
    # ... as the rankings made again inside the check's folds: it was given the search's
    assert seen["check_rankings"] is seen["rankings"]
    # some were never promoted to full training, and are candidates all the same
    assert "shared" in {history[masks[m]].fidelity for m in wanted}
    prob = clf.pareto_["check_probability"]
    assert len(prob) == len(clf.pareto_["check_accuracy"]) and np.all((prob > 0) & (prob <= 1))


def test_cv_prob_ranks_candidates_by_the_probability_of_the_true_class_then_accuracy():
    from evoprune.runs.front import check_ranking

    cv = np.array([0.90, 0.92, 0.92])
    prob = np.array([0.80, 0.70, 0.75])
    assert np.argsort(-check_ranking("cv", cv, prob)).tolist() == [2, 1, 0]
    assert np.argsort(-check_ranking("cv-prob", cv, prob)).tolist() == [0, 2, 1]
    tied = check_ranking("cv-prob", np.array([0.9, 0.95]), np.array([0.8, 0.8]))
    assert tied[1] > tied[0]  # equal probability: the more accurate head


def test_an_estimator_with_cv_prob_ships_the_front_head_surest_of_the_true_class(feature_cache):
    from evoprune.pareto import non_dominated

    clf = _fit_digits(evaluations=8, final_check="cv-prob", final_check_top=6, select="accuracy")
    p = clf.pareto_
    assert non_dominated(np.column_stack([1 - p["check_probability"], p["active_fraction"]])).all()
    # the rule "accuracy" takes the best score: here the highest probability of the true class
    assert p["selected"][int(np.argmax(p["check_probability"]))]
    assert list(p["check_probability"]) == sorted(p["check_probability"])


def _fit_digits(**params):
    """A two-objective estimator on 400 of scikit-learn's digits with a shared-head search and
    a 2-fold final check (``params`` change any of it)."""
    from sklearn.datasets import load_digits

    from evoprune import EvoPruneClassifier

    X, y = load_digits(return_X_y=True)
    settings = dict(
        hidden_size=16,
        population=8,
        evaluations=16,
        objectives="accuracy,size",
        fidelity="shared",
        shared_evaluations=80,
        final_check_folds=2,
        final_check_top=4,
        random_state=0,
    )
    return EvoPruneClassifier(**{**settings, **params}).fit(X[:400].astype(np.float32), y[:400])
