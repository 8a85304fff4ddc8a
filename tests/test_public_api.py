"""Every name `facedis_aug` advertises resolves, and importing the package stays cheap."""
import subprocess
import sys

import facedis_aug


def test_every_public_name_resolves():
    for name in facedis_aug.__all__:
        assert getattr(facedis_aug, name) is not None, name


def test_import_loads_no_heavy_modules():
    code = "import sys, facedis_aug; print(','.join(m for m in ('scipy', 'matplotlib', 'onnxruntime', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
