"""Every name `facedis_aug` advertises resolves, and importing the package stays cheap."""
import subprocess
import sys
from pathlib import Path

import pytest

import facedis_aug


def test_every_public_name_is_the_object_its_module_defines():
    import importlib

    from facedis_aug import _PUBLIC

    assert facedis_aug.__all__ == sorted(_PUBLIC)
    for name, module in _PUBLIC.items():
        value = getattr(facedis_aug, name)
        assert value is getattr(importlib.import_module(module), name), name
        # defined there, not re-exported from elsewhere (one home per public name)
        assert getattr(value, "__module__", module) == module, (name, value.__module__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        facedis_aug.nope  # noqa: B018


def test_reading_a_recipe_loads_no_torch():
    # every stage's config module is a light leaf (the package faces are lazy)
    code = ("import sys; from facedis_aug.recipe import load_recipe; load_recipe('recipes/tiny.yaml'); "
            "print(','.join(m for m in ('torch', 'numpy', 'scipy', 'timm') if m in sys.modules))")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout.strip()
    assert out == ""


def test_import_loads_no_heavy_modules():
    code = "import sys, facedis_aug; print(','.join(m for m in ('scipy', 'matplotlib', 'onnxruntime', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_library_pictures_leave_the_users_matplotlib_backend_alone(tmp_path):
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import numpy as np; "
            "from facedis_aug.directions.cluster import cluster_directions, plot_dendrogram; "
            "_, Z = cluster_directions(np.random.default_rng(0).normal(size=(8, 5)), num_clusters=2); "
            f"plot_dendrogram(Z, None, r'{tmp_path / 'd.png'}', num_clusters=2); "
            "import sys; assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "d.png").stat().st_size > 1000
