"""Recipe parsing: strict keys, types, choices, overrides, and the shipped recipe files."""
from pathlib import Path

import pytest

from facedis_aug.ops.dataconf import ConfigError
from facedis_aug.recipe import Recipe, load_recipe, recipe_from_dict

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_defaults_and_roundtrip():
    r = recipe_from_dict({})
    assert isinstance(r, Recipe)
    again = recipe_from_dict(r.to_dict())
    assert again == r


@pytest.mark.parametrize("name", ["tiny", "casia", "ffhq"])
def test_shipped_recipes_parse(name):
    r = load_recipe(REPO / "recipes" / f"{name}.yaml")
    assert r.run.name == name


def test_paper_settings_in_recipes():
    casia = load_recipe(REPO / "recipes" / "casia.yaml")
    ffhq = load_recipe(REPO / "recipes" / "ffhq.yaml")
    assert (casia.gan.resolution, ffhq.gan.resolution) == (128, 256)
    assert casia.data.preprocess == "casia" and ffhq.data.preprocess == "ffhq"


def test_unknown_key_names_file_key_and_choices(tmp_path):
    p = write(tmp_path, "gan:\n  resolutoin: 32\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert str(p) in msg and "gan.resolutoin" in msg and "resolution" in msg


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'gann'"):
        load_recipe(write(tmp_path, "gann: {}\n"))


def test_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match="gan.resolution: expected an integer"):
        load_recipe(write(tmp_path, "gan:\n  resolution: big\n"))


def test_bool_is_not_int(tmp_path):
    with pytest.raises(ConfigError, match="expected an integer"):
        load_recipe(write(tmp_path, "run:\n  seed: true\n"))


def test_literal_choices(tmp_path):
    with pytest.raises(ConfigError, match="choices: 'synthetic', 'folder'"):
        load_recipe(write(tmp_path, "data:\n  source: webdataset\n"))


def test_bad_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML \(line \d+\)"):
        load_recipe(write(tmp_path, "run:\n  seed: [1,\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    p = write(tmp_path, "run:\n  seed: 3\n")
    r = load_recipe(p, ["run.seed=7", "data.synthetic.pose=uniform", "run.stages=[gan]"])
    assert r.run.seed == 7 and r.data.synthetic.pose == "uniform" and r.run.stages == ["gan"]
    with pytest.raises(ConfigError, match="section.key=value"):
        load_recipe(p, ["run.seed"])
    with pytest.raises(ConfigError, match="unknown key 'run.sed'"):
        load_recipe(p, ["run.sed=1"])
    with pytest.raises(ConfigError, match="choices"):
        load_recipe(p, ["run.stages=[gan, train]"])
