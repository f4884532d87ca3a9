"""The run settings, declared once: validation, results-folder names, the CLI options derived
from the declaration, and the saved form."""

import argparse
import dataclasses
import json

import pytest

from evoprune.errors import ConfigError
from evoprune.runs.config import (
    BY_NAME,
    SETTINGS,
    RunConfig,
    add_run_options,
    config_from_args,
    default_evaluations,
    default_out_dir,
    estimator_defaults,
    parse_objectives,
    result_settings,
)


def test_runconfig_fields_are_the_declared_settings_with_their_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    assert list(fields) == [s.name for s in SETTINGS]
    assert fields == {s.name: s.default for s in SETTINGS}
    # keyword construction, as tests and benchmarks use it
    assert RunConfig(data="x", population=6, evaluations=12, seed=1).population == 6


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(population=1),
            "--population 1 (population=1): must be at least 4 (mating draws 1 + 3 parents)",
        ),
        (dict(evaluations=0), "--evaluations 0 (evaluations=0): must be at least 1"),
        (dict(evaluations=-5), "--evaluations -5 (evaluations=-5): must be at least 1"),
        (
            dict(population=10, evaluations=9),
            "--evaluations 9 (evaluations=9): must be at least population=10",
        ),
        (
            dict(population=300),
            "--evaluations 200 (evaluations=200): must be at least "
            "population=300: the initial population counts toward the budget "
            "(the default for encoding fs; give --evaluations)",
        ),
        (dict(mutation_prob=2), "--mutation-prob 2.0 (mutation_prob=2.0): must be within [0, 1]"),
        (dict(mutation_prob=-0.1), "(mutation_prob=-0.1): must be within [0, 1]"),
        (dict(init="1.5"), "--init 1.5 (init='1.5'): must be 'ranked', 'random', a density"),
        (dict(init="dense"), "--init dense (init='dense')"),
        (
            dict(encoding="edges-fc", init="ranked"),
            "--init ranked (init='ranked'): encoding edges-fc switches no whole units",
        ),
        (
            dict(encoding="edges-out", variation="guided"),
            "--variation guided (variation='guided'): encoding edges-out switches no whole",
        ),
        (dict(variation="smart"), "--variation smart (variation='smart'): is unknown; choose"),
        (dict(seed=-1), "--seed -1 (seed=-1): must be an integer in [0, 4294967295]"),
        (dict(seed=2**64), "(seed=18446744073709551616): must be an integer in [0, 4294967295]"),
        (dict(seed=1.5), "--seed 1.5 (seed=1.5): must be an integer"),
        (dict(limit=0), "--limit 0 (limit=0): must be at least 1"),
        (dict(fold=-1), "--fold -1 (fold=-1): must be at least 0"),
        (
            dict(test_fraction=0.0),
            "--test-fraction 0.0 (test_fraction=0.0): must be between 0 and 1",
        ),
        (dict(test_fraction=1.0), "(test_fraction=1.0): must be between 0 and 1"),
        (dict(val_fraction=1.5), "--val-fraction 1.5 (val_fraction=1.5): must be between 0 and 1"),
        (dict(val_fraction=float("nan")), "(val_fraction=nan): must be a finite number"),
        (dict(cv_folds=1), "--cv-folds 1 (cv_folds=1): must be at least 2"),
        (dict(hidden_size=0), "--hidden-size 0 (hidden_size=0): must be at least 1"),
        (dict(data=""), "--data '' (data=''): must name a folder"),
        (
            dict(backbone="resnet5"),
            "--backbone resnet5 (backbone='resnet5'): is not a known backbone",
        ),
        (dict(encoding="fc9"), "--encoding fc9 (encoding='fc9'): is unknown; choose one of fs"),
        (dict(trainer="slow"), "--trainer slow (trainer='slow'): is unknown; choose one of"),
        (dict(fitness_split="holdout"), "--fitness-split holdout (fitness_split='holdout')"),
        (dict(population="10"), "--population 10 (population='10'): must be an integer"),
        (dict(objectives="size"), "--objectives size (objectives='size'): must include accuracy"),
        (dict(objectives="accuracy,speed"), "unknown objective(s) speed"),
        (dict(objectives="accuracy,accuracy"), "repeats an objective"),
        (dict(objectives=""), "must name at least one objective"),
        (
            dict(objectives="accuracy,size", algorithm="ssga"),
            "--algorithm ssga (algorithm='ssga'): the steady-state GA optimises one objective",
        ),
        (dict(algorithm="moead"), "--algorithm moead (algorithm='moead'): is unknown"),
        (
            dict(select="knee"),
            "--select knee (select='knee'): choosing a head from a front needs "
            "more than one objective",
        ),
        (dict(select="one-se"), "needs more than one objective"),
        (dict(objectives="accuracy,size", select="smallest"), "--select smallest"),
        (dict(objectives="accuracy,size", select="smallest-within:-1"), "between 0 and 100"),
        (dict(objectives="accuracy,ood"), "ood needs --ood PATH or a built-in OOD set"),
        (
            dict(objectives="accuracy,ood", ood="no/such/folder"),
            "--ood no/such/folder (ood='no/such/folder'): is neither a built-in OOD set",
        ),
        (dict(ood_score="logit"), "--ood-score logit (ood_score='logit'): is unknown"),
    ],
)
def test_validate_names_option_value_and_range(kwargs, message):
    with pytest.raises(ConfigError) as err:
        RunConfig(**kwargs).validate()
    assert message in str(err.value)


def test_validate_resolves_settings_that_depend_on_others():
    cfg = RunConfig().validate()
    assert (cfg.evaluations, cfg.algorithm, cfg.select, cfg.objectives) == (
        200,
        "ssga",
        None,
        ("accuracy",),
    )
    assert RunConfig(encoding="both").validate().evaluations == 300 == default_evaluations("both")
    mo = RunConfig(objectives="size,accuracy").validate()
    assert (mo.objectives, mo.algorithm, mo.select) == (("accuracy", "size"), "nsga2", "one-se")
    assert RunConfig(objectives=["accuracy", "size"], select="knee").validate().select == "knee"
    ood = RunConfig(objectives="accuracy,size,ood", ood="digits").validate()
    assert ood.objectives == ("accuracy", "size", "ood")
    assert cfg.validate() == cfg  # idempotent: a resolved config validates to itself


@pytest.mark.parametrize(
    "kwargs,init,variation",
    [
        ({}, "ranked", "guided"),  # unit encodings start from the rankings
        (dict(encoding="fc2"), "ranked", "guided"),
        (dict(encoding="both"), "ranked", "guided"),
        (dict(encoding="edges-fc"), "random", "paper"),  # connections: nothing to rank
        (dict(init="random"), "random", "paper"),  # the paper's GA
        (dict(init="0.3-0.7"), "0.3-0.7", "paper"),
        (dict(init="random", variation="guided"), "random", "guided"),
        (dict(init="ranked", variation="paper"), "ranked", "paper"),
    ],
)
def test_init_and_variation_defaults_follow_the_encoding(kwargs, init, variation):
    cfg = RunConfig(**kwargs).validate()
    assert (cfg.init, cfg.variation) == (init, variation)


def test_saved_configs_without_variation_ran_the_paper_operators():
    doc = RunConfig(init="random").validate().to_dict()
    del doc["variation"]  # a folder written before the setting existed
    assert RunConfig.from_dict(doc).validate().variation == "paper"


def test_parsers():
    assert parse_objectives(" accuracy , ood ") == ("accuracy", "ood")
    for bad in ("smallest-within:", "smallest-within:inf", "best"):
        with pytest.raises(ConfigError, match="select"):
            RunConfig(objectives="accuracy,size", select=bad).validate()


def test_ood_names_repeated_for_a_light_import_match_the_registries():
    from evoprune import ood
    from evoprune.data import ood_images
    from evoprune.runs import config

    assert config.BUILTIN_OOD == ood_images.builtin_ood_names()
    assert set(config.OOD_SCORES) == set(ood.OOD_SCORES)


def test_dict_round_trip_and_saved_configs_of_another_version():
    cfg = RunConfig(objectives="accuracy,size", limit=50, seed=3).validate()
    doc = json.loads(json.dumps(cfg.to_dict()))
    assert RunConfig.from_dict(doc) == cfg
    with pytest.raises(ConfigError, match="unknown setting.*colour.*missing setting.*limit"):
        RunConfig.from_dict({**{k: v for k, v in doc.items() if k != "limit"}, "colour": 1})
    with pytest.raises(ConfigError, match="mapping"):
        RunConfig.from_dict(["data"])


#: For each result setting, another valid value (a new setting must be added here).
OTHER_VALUES = {
    "data": "other",
    "encoding": "fc",
    "backbone": "efficientnet-lite1",
    "hidden_size": 256,
    "population": 20,
    "evaluations": 150,
    "trainer": "paper",
    "fitness_split": "cv",
    "val_fraction": 0.3,
    "cv_folds": 3,
    "test_fraction": 0.25,
    "fold": 1,
    "init": "0.5",
    "mutation_prob": 0.1,
    "variation": "paper",
    "seed": 1,
    "skip_bad_images": True,
    "limit": 300,
    "objectives": "accuracy,size",
    "algorithm": "nsga2",
    "select": None,
    "ood": "digits",
    "ood_score": "msp",
    "asynchronous": True,  # the asynchronous GA takes another path (workers etc. do not)
    "fidelity": "multi",
    "shared_evaluations": 1000,  # with --fidelity shared (below)
    "final_check": "cv",
    "final_check_folds": 3,
    "final_check_top": 5,
    "sizes": "0.05,0.1",
}


def test_every_result_setting_changes_the_default_folder():
    assert set(OTHER_VALUES) == set(result_settings())  # the others change no result
    base = RunConfig()
    folder = default_out_dir(base)
    assert folder.parent.name == "runs"
    assert folder.name.startswith("elpv_fs_efficientnet-lite0_s0-")
    assert len(folder.name.rsplit("-", 1)[1]) == 8
    assert default_out_dir(RunConfig(evaluations=200)) == folder  # the resolved default
    seen = {folder}
    for name, value in OTHER_VALUES.items():
        if name == "select":  # only meaningful with several objectives
            a = RunConfig(objectives="accuracy,size")
            b = RunConfig(objectives="accuracy,size", select="knee")
        elif name == "ood_score":
            a, b = RunConfig(), RunConfig(ood_score=value)
        elif name == "shared_evaluations":  # counts only where a shared head scores
            a = RunConfig(fidelity="shared")
            b = RunConfig(fidelity="shared", shared_evaluations=value)
        else:
            a, b = base, RunConfig(**{name: value})
        assert default_out_dir(a) != default_out_dir(b), name
        seen.add(default_out_dir(b))
    assert len(seen) == len(OTHER_VALUES) + 1


def test_default_folder_refuses_bad_settings():
    with pytest.raises(ConfigError, match="--population 1"):
        default_out_dir(RunConfig(population=1))


# --- the command line, derived from the declaration -------------------------------------------


def _parser(**kw):
    p = argparse.ArgumentParser()
    add_run_options(p, **kw)
    return p


def test_cli_options_come_from_the_declaration():
    p = _parser()
    actions = {a.dest: a for a in p._actions if a.dest != "help"}
    assert set(actions) == set(BY_NAME)
    for s in SETTINGS:
        a = actions[s.name]
        assert a.option_strings == [s.flag] and a.default == s.default and a.help
        assert a.choices == s.choice_list()
    # defaults parse to the default configuration; options parse to their settings
    assert config_from_args(p.parse_args([])) == RunConfig()
    args = p.parse_args(
        [
            "--population",
            "10",
            "--objectives",
            "accuracy,size",
            "--skip-bad-images",
            "--limit",
            "40",
            "--select",
            "knee",
        ]
    )
    cfg = config_from_args(args).validate()
    assert (cfg.population, cfg.objectives, cfg.skip_bad_images, cfg.limit, cfg.select) == (
        10,
        ("accuracy", "size"),
        True,
        40,
        "knee",
    )
    with pytest.raises(SystemExit):
        p.parse_args(["--trainer", "slow"])
    q = _parser(exclude=("encoding", "seed"))
    assert not {"encoding", "seed"} & {a.dest for a in q._actions}
    assert config_from_args(q.parse_args([]), encoding="fc", seed=4).seed == 4
    with pytest.raises(ValueError):
        _parser(exclude=("colour",))


def test_estimator_subset():
    assert estimator_defaults()["random_state"] == 0
    assert "data" not in estimator_defaults() and "ood" not in estimator_defaults()


@pytest.fixture
def no_run(monkeypatch):
    """run_experiment replaced: records its calls, computes nothing."""
    import evoprune.runs.experiment as experiment

    calls = []

    def fake(cfg, out, **kw):
        calls.append((cfg, out, kw))
        raise ConfigError("stop here")

    monkeypatch.setattr(experiment, "run_experiment", fake)
    return calls


@pytest.mark.parametrize(
    "option",
    [
        ["--population", "1"],
        ["--evaluations", "-5"],
        ["--init", "1.5"],
        ["--mutation-prob", "2"],
        ["--evaluations", "0"],
        ["--seed", "-1"],
        ["--seed", str(2**70)],
        ["--limit", "0"],
        ["--select", "knee"],
        ["--objectives", "accuracy,ood"],
        ["--data", ""],
    ],
)
def test_bad_option_leaves_a_finished_run_untouched(tmp_path, no_run, caplog, option):
    """Issue 8.1: a bad value stops before anything is written, with one message."""
    from evoprune.cli import main

    run = tmp_path / "R"
    run.mkdir()
    files = {"result.json": "{}", "history.csv": "index\n1\n", "head.safetensors": "x"}
    for name, text in files.items():
        (run / name).write_text(text)
    assert main(["run", "--out", str(run), *option]) == 2
    assert not no_run
    assert {p.name: p.read_text() for p in run.iterdir()} == files
    assert option[0] in caplog.text
    assert main(["run", "--out", str(tmp_path / "new"), *option]) == 2
    assert not (tmp_path / "new").exists()


def test_out_that_is_a_file_is_refused(tmp_path, caplog):
    from evoprune.cli import main

    f = tmp_path / "notes.txt"
    f.write_text("mine")
    for command in (["run", "--population", "6", "--evaluations", "6"], ["compare"]):
        caplog.clear()
        assert main([*command, "--out", str(f), "--data", str(tmp_path / "none")]) == 2
        assert f.read_text() == "mine"
        assert f"--out {f} is a file, not a folder" in caplog.text


def test_run_passes_the_validated_config_and_overwrite(tmp_path, no_run):
    from evoprune.cli import main

    main(["run", "--out", str(tmp_path / "a"), "--overwrite", "--encoding", "both"])
    main(["run", "--out", str(tmp_path / "b")])
    (cfg_a, out_a, kw_a), (cfg_b, _, kw_b) = no_run
    assert cfg_a.evaluations == 300 and cfg_a.algorithm == "ssga"  # resolved before running
    assert kw_a["overwrite"] is True and kw_b["overwrite"] is False
    main(["run", "--limit", "30"])
    assert str(no_run[-1][1]) == str(default_out_dir(RunConfig(limit=30)))


def test_compare_checks_settings_before_anything(tmp_path, monkeypatch, caplog):
    import evoprune.compare.runner as runner
    from evoprune.cli import main
    from evoprune.compare.runner import CompareConfig

    monkeypatch.setattr(runner, "run_comparison", lambda *a, **k: pytest.fail("comparison started"))
    for option, text in [
        (["--runs", "0"], "--runs 0 (runs=0)"),
        (["--population", "2"], "--population 2"),
        (["--seed-base", "-1"], "--seed-base -1"),
        (["--encodings", "fs,fs"], "repeats an encoding"),
    ]:
        caplog.clear()
        assert main(["compare", "--out", str(tmp_path / "c"), *option]) == 2
        assert text in caplog.text
        assert not (tmp_path / "c").exists()
    with pytest.raises(SystemExit):
        main(["compare", "--encodings", "fs,fc9"])
    with pytest.raises(ConfigError, match="unknown encoding.*fc9"):
        CompareConfig(base=RunConfig(), encodings=("fs", "fc9")).check()
    with pytest.raises(ConfigError, match="--encodings ''"):
        CompareConfig(base=RunConfig(), encodings=()).check()
