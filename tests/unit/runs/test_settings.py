"""The typed settings groups (evoprune.settings) and the one declaration (runs.config.SETTINGS)
agree field for field, and RunConfig is composed of the groups."""

import dataclasses
import typing

import pytest

from evoprune import settings
from evoprune.errors import ConfigError
from evoprune.runs.config import SETTINGS, RunConfig
from evoprune.settings import (
    GROUPS,
    ClusterSettings,
    FitnessSettings,
    SearchSettings,
    Seeded,
    group_of,
)


def _declared_type(setting):
    t = setting.type
    if t is tuple:  # a comma list: strings, or what its parse function returns
        t = typing.get_type_hints(setting.parse)["return"] if setting.parse else tuple[str, ...]
    return t | None if setting.nullable else t


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_group_has_exactly_the_declared_settings_of_its_group(group):
    cls = GROUPS[group]
    declared = {s.name for s in SETTINGS if s.group == group}
    # the run's one seed is a field of every group whose layer draws random numbers
    expected = declared | ({"seed"} if issubclass(cls, Seeded) else set())
    assert set(_fields(cls)) == expected, (
        f"{cls.__name__} and the settings with group={group!r} in SETTINGS differ: add the "
        "field to the group's dataclass in evoprune/settings.py, or fix the Setting's group"
    )


def test_every_setting_has_one_field_with_its_type_and_default():
    hints = {}
    for cls in (Seeded, *GROUPS.values()):
        hints.update(typing.get_type_hints(cls))
    for s in SETTINGS:
        owners = [c for c in GROUPS.values() if s.name in _fields(c)]
        assert owners, f"setting {s.name!r} has no field in any group of evoprune.settings"
        if s.name != "seed":
            assert len(owners) == 1, f"{s.name!r} is a field of {owners}"
        field = _fields(owners[0])[s.name]
        assert field.default == s.default, s.name
        assert hints[s.name] == _declared_type(s), s.name
    assert GROUPS["search"] is SearchSettings and "seed" in _fields(Seeded)


def test_run_config_is_every_group_and_has_every_setting_in_order():
    cfg = RunConfig()
    assert all(isinstance(cfg, cls) for cls in GROUPS.values())
    assert set(_fields(RunConfig)) == {s.name for s in SETTINGS}
    assert list(cfg.to_dict()) == [s.name for s in SETTINGS]
    assert cfg.to_dict() == {
        s.name: list(s.default) if isinstance(s.default, tuple) else s.default for s in SETTINGS
    }


def test_group_gives_only_that_groups_fields():
    cfg = RunConfig(workers=3, seed=7, fitness_split="cv", cv_folds=4)
    cluster = cfg.group(ClusterSettings)
    assert type(cluster) is ClusterSettings
    assert cluster == ClusterSettings(workers=3)
    fitness = group_of(cfg, FitnessSettings)
    assert fitness == FitnessSettings(fitness_split="cv", cv_folds=4, seed=7)
    assert group_of(fitness, FitnessSettings) is fitness


def test_settings_are_frozen_and_keyword_only():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        FitnessSettings("cv")  # type: ignore[misc]


def test_budget_is_the_resolved_evaluations():
    assert RunConfig(encoding="both").validate().budget == 300
    with pytest.raises(ConfigError, match="validate"):
        _ = SearchSettings().budget


def test_settings_module_stays_light():
    # a low layer: it imports no other part of evoprune than errors
    src = open(settings.__file__).read()
    imports = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert [ln for ln in imports if "evoprune" in ln] == ["from evoprune.errors import ConfigError"]
