"""Ensembles of a multi-objective run's front heads: members chosen on the fitness split, then
the ensemble scored on held-out images against the best single front head and the not-pruned
head, written to ``ensemble.json`` in the run folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from evoprune.errors import ConfigError
from evoprune.model.head import logits, predict_proba
from evoprune.runs.context import RunContext
from evoprune.runs.store import (
    check_ensemble_target,
    front_head_path,
    hex_to_mask,
    load_head,
    open_run,
    write_ensemble_file,
)

log = logging.getLogger(__name__)


def fitness_split_probas(
    context: RunContext, masks: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(K, N, C) probabilities of each mask's head on the run's fitness split and the labels:
    each head trained on a fold's fitting part and scored on its scoring part (folds
    concatenated), exactly as the search measured fitness, so held-out images stay unseen."""
    folds = context.folds
    probas = [
        np.concatenate([predict_proba(context.train_on(f, mask), f.X_score) for f in folds])
        for mask in masks
    ]
    return np.stack(probas), np.concatenate([f.y_score for f in folds])


def build_ensemble(
    run_dir: str | Path,
    members: int = 3,
    vote: str = "soft",
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    write: bool = True,
) -> dict:
    """Choose ``members`` front heads of the multi-objective run in ``run_dir`` and score
    their ensemble; returns (and with ``write`` writes, see :func:`write_ensemble`) the
    ``ensemble.json`` contents. With ``write=False`` the caller writes it once everything else
    (an export) has succeeded, so a failure leaves the previous ensemble.json as it was."""
    from evoprune.runs.experiment import prepare_data, prepare_ood
    from evoprune.voting import choose_members, ensemble_predict

    run = _front_run(run_dir, members, vote)
    r = run.result
    check_ensemble_target(run.path)
    cfg = run.settings().validate()
    data = prepare_data(cfg, progress=progress, cache_dir=cache_dir)
    context = RunContext.of_data(cfg, data)
    masks = [hex_to_mask(m["mask"], r.genes) for m in r.front]
    val_probas, y_val = fitness_split_probas(context, masks)
    chosen = choose_members(val_probas, y_val, int(members), masks=np.stack(masks), vote=vote)
    heads = [load_head(front_head_path(run.path, m["rank"]), r.feature_dim) for m in r.front]
    test_probas = np.stack([predict_proba(heads[i], data.X_test) for i in chosen])
    acc = float((ensemble_predict(test_probas, vote) == data.y_test).mean())
    best_single = max(r.front, key=lambda m: m["test_accuracy"])
    doc = {
        "members": [int(r.front[i]["rank"]) for i in chosen],
        "vote": vote,
        "member_active_fractions": [float(masks[i].mean()) for i in chosen],
        "ensemble_params": int(sum(heads[i].n_params() for i in chosen)),
        "not_pruned_params": int(r.reference_head_params),
        "validation_accuracy": float((ensemble_predict(val_probas[chosen], vote) == y_val).mean()),
        "test_accuracy": acc,
        "best_single_test_accuracy": float(best_single["test_accuracy"]),
        "best_single_rank": int(best_single["rank"]),
        "selected_test_accuracy": r.test_accuracy,
        "not_pruned_test_accuracy": r.reference_test_accuracy,
    }
    if cfg.ood:
        ood = prepare_ood(cfg, progress=progress, cache_dir=cache_dir)
        members_heads = [heads[i] for i in chosen]
        doc.update(_ensemble_ood(cfg.ood_score, members_heads, data.X_test, ood.X_heldout))
        doc["best_single_test_auroc"] = best_single["test_auroc"]
    if write:
        write_ensemble(run.path, doc)
    return doc


def _front_run(run_dir: str | Path, members: int, vote: str):
    """The finished multi-objective run in ``run_dir``, after the checks of ``members`` and
    ``vote`` against it."""
    from evoprune.voting import VOTES

    if vote not in VOTES:
        raise ConfigError(f"--vote {vote}: choose one of {', '.join(VOTES)}")
    run = open_run(run_dir)
    r = run.result
    if not r.front:
        raise ConfigError(
            f"{run.path} is a single-objective run: it has no front to ensemble; "
            "run it with --objectives accuracy,size (or accuracy,size,ood)"
        )
    if not 1 <= int(members) <= len(r.front):
        raise ConfigError(
            f"--members {members}: the front of {run.path} has {len(r.front)} "
            f"heads; choose 1 to {len(r.front)}"
        )
    return run


def _ensemble_ood(score: str, heads: list, X_test: np.ndarray, X_ood: np.ndarray) -> dict:
    """Held-out OOD AUROC and FPR95 of the ensemble: the run's OOD score of the members' mean
    logits."""
    from evoprune.ood import auroc, fpr_at_95_tpr, ood_score

    s_in, s_out = (
        ood_score(score, np.mean([logits(h, X) for h in heads], axis=0)) for X in (X_test, X_ood)
    )
    return {"test_auroc": auroc(s_in, s_out), "test_fpr95": fpr_at_95_tpr(s_in, s_out)}


def write_ensemble(run_dir: str | Path, doc: dict) -> Path:
    """``RUN_DIR/ensemble.json``, written (atomically, the folder locked) only after the
    ensemble was built and exported."""
    path = write_ensemble_file(run_dir, doc)
    log.info("ensemble of %d front heads written to %s", len(doc["members"]), path)
    return path
