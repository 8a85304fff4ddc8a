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


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "recipes").glob("*.yaml")))
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
    # YAML 1.1 reads 1e-3 as a string: number fields take it (and 1.0e-3) as the number; words stay refused
    assert load_recipe(p, ["decompose.lr=1e-3"]).decompose.lr == 1e-3 == load_recipe(p, ["decompose.lr=1.0e-3"]).decompose.lr
    assert load_recipe(p, ["gan.lr=2E-4"]).gan.lr == 2e-4
    with pytest.raises(ConfigError, match="expected a number, got 'e-3'"):
        load_recipe(p, ["decompose.lr=e-3"])


@pytest.mark.parametrize("override, message", [
    ("gan.batch=0", "gan.batch = 0: must be an integer >= 1"),
    ("run.device=tpu", "run.device = 'tpu': must be auto, cpu, cuda or cuda:N"),
    ("gan.kimg=-1", "gan.kimg = -1.0: must be > 0"),
    ("gan.lr=-1", "gan.lr = -1.0: must be > 0"),
    ("gan.resolution=33", "gan.resolution = 33: must be a power of two in 32..256"),
    ("gan.betas=[0.0, 1.5]", "gan.betas"),
])
def test_bad_values_name_the_key_the_value_and_blame_the_command_line(tmp_path, override, message):
    p = write(tmp_path, "gan:\n  batch: 4\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(p, [override])
    text = str(e.value)
    assert text.startswith(f"override {override!r} (command line): ") and message in text, text
    assert str(p) not in text  # the file was fine: it is not blamed
    load_recipe(p, ["run.device=cuda:1", "gan.kimg=0.5"])  # valid values pass


def test_the_same_bad_value_in_the_file_names_the_file(tmp_path):
    p = write(tmp_path, "gan:\n  batch: 0\n")
    with pytest.raises(ConfigError, match=rf"^{p}: gan.batch = 0: must be an integer >= 1$"):
        load_recipe(p)


def test_top_level_list_and_duplicate_keys_are_refused_naming_the_file(tmp_path):
    p = write(tmp_path, "- gan\n- decompose\n")
    with pytest.raises(ConfigError, match=rf"^{p}: a recipe is a mapping of sections .* got a list"):
        load_recipe(p)
    p = write(tmp_path, "gan:\n  batch: 4\n  kimg: 1\n  batch: 8\n")
    with pytest.raises(ConfigError, match=rf"^{p}: key 'batch' given twice \(lines 2 and 4\)"):
        load_recipe(p)


@pytest.mark.parametrize("override, message", [
    ("directions.num_pairs=100", "directions.num_pairs = 100 must exceed gan.w_dim = 128"),
    ("directions.jacobian_pairs=128", "directions.jacobian_pairs = 128 must exceed gan.w_dim = 128"),
    ("decompose.aug_buffer=64", "decompose.aug_buffer = 64 must exceed gan.w_dim = 128"),
])
def test_constraints_between_sections_are_checked_when_the_recipe_loads(override, message):
    # the yaw augmentation on generator samples (the tiny recipe trains on its data, without it)
    aug = ["decompose.source=mixed", "decompose.yaw_aug=true"]
    with pytest.raises(ConfigError, match=message):
        load_recipe(REPO / "recipes" / "tiny.yaml", [*aug, override])
    # the same buffer is fine without yaw augmentation, where it is never used
    load_recipe(REPO / "recipes" / "tiny.yaml", ["decompose.aug_buffer=64", "decompose.yaw_aug=false"])
    load_recipe(REPO / "recipes" / "tiny.yaml", ["decompose.aug_buffer=64", "decompose.source=data"])
    # overrides valid only together: a larger w with more pairs, in either order
    load_recipe(REPO / "recipes" / "tiny.yaml", ["gan.w_dim=1024", "directions.num_pairs=2048",
                                                 "directions.jacobian_pairs=2048", "decompose.aug_buffer=2048"])
