"""Recipes: TOML files for training runs (lmfn_cli.recipes, lmfn train --recipe)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from conftest import natural_like
from lmfn_cli.cli import main
from lmfn_cli.errors import ConfigError
from lmfn_cli.images import write_image
from lmfn_cli.recipes import parse_recipe, read_recipe, recipe_toml, resolve_init
from lmfn_cli.train import TrainConfig, load_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def pairs_dir(tmp_path):
    root = tmp_path / "pairs"
    for i in range(3):
        sharp = natural_like(48, 48, seed=i)
        write_image(root / "sharp" / f"{i}.png", sharp)
        write_image(root / "blur" / f"{i}.png", sharp[::-1].copy())
    return root


def _recipe(tmp_path, pairs_dir, **extra) -> Path:
    body = {
        "variant": '"lmfn-rfdb1"', "precision": '"fp32"', "paired": f'["{pairs_dir}"]', "loss": '"l1"',
        "lr": "2e-3", "batch": "2", "patch": "32", "steps": "3", "val_every": "100", "log_every": "1", "seed": "7",
    }
    body.update(extra)
    path = tmp_path / "r.toml"
    path.write_text("# a test recipe\n" + "".join(f"{k} = {v}\n" for k, v in body.items()))
    return path


def test_recipe_toml_round_trips_a_config():
    cfg = TrainConfig.for_variant("lmfn-residual", paired=("a", "b"), val=("v",), lr=3e-4, betas=(0.9, 0.99),
                                  loss="charbonnier", fft_weight=0.05, kernels="k")
    recipe = parse_recipe(recipe_toml(cfg, init="w.safetensors", precision="bf16"))
    fields = dict(recipe.fields)
    variant = fields.pop("variant")
    again = TrainConfig.for_variant(variant, model_overrides={"global_residual": recipe.global_residual}, **fields)
    assert again == cfg
    assert (recipe.init, recipe.precision) == ("w.safetensors", "bf16")


def test_recipe_toml_refuses_a_model_that_is_not_a_variant():
    from conftest import TINY

    with pytest.raises(ConfigError, match="not variant"):
        recipe_toml(TrainConfig(model=TINY))


@pytest.mark.parametrize("text, message", [
    ("lr = 1e-3\nlearning_rate = 2\n", "unknown recipe keys: learning_rate"),
    ("[data]\nsharp = 'x'\n", "flat table"),
    ("precision = 'fp8'\n", "precision must be"),
    ("global_residual = 'yes'\n", "true or false"),
    ("lr = \n", "not valid TOML"),
])
def test_bad_recipes_are_refused_with_a_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe(text, name="bad")


def test_relative_paths_resolve_beside_the_recipe_when_they_exist_there(tmp_path):
    (tmp_path / "pairs").mkdir()
    path = tmp_path / "r.toml"
    path.write_text('paired = "pairs"\nsharp = ["elsewhere"]\n')
    recipe = read_recipe(path)
    assert recipe.fields["paired"] == (str(tmp_path / "pairs"),)
    assert recipe.fields["sharp"] == ("elsewhere",)
    assert recipe.name == "r" and len(recipe.sha256) == 64


def test_unknown_init_name_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a registered weights name"):
        resolve_init("no-such-weights")
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"x")
    assert resolve_init(str(f)) == f


def test_cli_train_with_a_recipe_command_line_wins_and_the_recipe_is_saved(tmp_path, pairs_dir):
    recipe = _recipe(tmp_path, pairs_dir)
    run, out = tmp_path / "run", tmp_path / "w.safetensors"
    r = CliRunner().invoke(main, ["train", str(run), "--recipe", str(recipe), "--lr", "5e-4", "-q"])
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(run / "checkpoint.pt")
    cfg = TrainConfig.from_dict(ckpt["config"])
    assert cfg.lr == 5e-4  # the command line overrides the recipe
    assert (cfg.loss, cfg.batch, cfg.patch, cfg.steps, cfg.seed, cfg.variant) == ("l1", 2, 32, 3, 7, "lmfn-rfdb1")
    assert cfg.paired == (str(pairs_dir),)
    assert ckpt["step"] == 3
    assert ckpt["recipe"]["text"] == recipe.read_text() and ckpt["recipe"]["name"] == "r"
    # resume keeps the recipe; export writes it into the weights' metadata
    r = CliRunner().invoke(main, ["train", str(run), "--resume", "--steps", "4", "--export", str(out), "--export-which", "last", "-q"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(run / "checkpoint.pt")["recipe"]["text"] == recipe.read_text()
    with safe_open(str(out), "pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["recipe_source"])["text"] == recipe.read_text()
    effective = parse_recipe(meta["recipe"])
    assert effective.fields["lr"] == 5e-4 and effective.fields["steps"] == 4 and effective.fields["loss"] == "l1"


def test_cli_recipe_steps_and_precision_are_used(tmp_path, pairs_dir):
    recipe = _recipe(tmp_path, pairs_dir, steps="2")
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", str(run), "--recipe", str(recipe), "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["step"] == 2
    r = CliRunner().invoke(main, ["train", str(tmp_path / "run2"), "--recipe", str(recipe), "--steps", "1", "-q"])
    assert json.loads(r.stdout)["step"] == 1


def test_cli_bad_recipe_is_a_usage_error(tmp_path, pairs_dir):
    recipe = _recipe(tmp_path, pairs_dir, bogus="1")
    r = CliRunner().invoke(main, ["train", str(tmp_path / "run"), "--recipe", str(recipe)])
    assert r.exit_code == 2 and "unknown recipe keys: bogus" in r.output


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_builds_a_config(path):
    recipe = read_recipe(path)
    fields = dict(recipe.fields)
    variant = fields.pop("variant")
    cfg = TrainConfig.for_variant(variant, **fields)
    assert cfg.steps > 0 and (cfg.paired or cfg.sharp)
    assert "lmfn train" in recipe.text  # says how it is run
