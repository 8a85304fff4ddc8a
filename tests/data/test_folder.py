"""ImageFolderFaces: content sniffing, broken files, geometry, colour, zips, DataLoader workers."""
from __future__ import annotations

import io
import copy
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from facedis_aug.data.folder import ALPHA_BACKGROUND, ImageFolderFaces, sniff_format

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOL = 1.5 / 255  # one grey level (resampling of a constant image may round once)


def _save(path: Path, im: Image.Image, fmt: str, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **kw)
    return path


def _jpeg_bytes(size=(64, 48), colour=(30, 140, 220)) -> bytes:
    rng = np.random.default_rng(0)
    arr = np.clip(np.array(colour) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small messy face folder: 6 good images in 2 classes plus junk, broken and hidden files."""
    root = tmp_path / "faces"
    _save(root / "alice" / "a.png", Image.new("RGB", (20, 30), (200, 10, 50)), "PNG")
    _save(root / "alice" / "b.pgm", Image.new("L", (16, 16), 77), "PPM")
    (root / "bob").mkdir(parents=True)
    (root / "bob" / "c.jpg").write_bytes(_jpeg_bytes())
    gif = Image.new("P", (12, 12), 0)
    gif.putpalette([10, 200, 30] + [0, 0, 0] * 255)
    _save(root / "bob" / "subject01.centerlight", gif, "GIF")  # a GIF without image extension
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 0)  # fully transparent red: must become the background
    rgba[:, 4:] = (0, 255, 0, 255)  # opaque green
    _save(root / "bob" / "e.png", Image.fromarray(rgba, "RGBA"), "PNG")
    _save(root / "bob" / "deep" / "f.webp", Image.new("RGB", (10, 10), (5, 6, 7)), "WEBP", lossless=True)
    (root / "carol").mkdir()
    (root / "carol" / "broken.png").write_text("this is not a png\n")
    data = _jpeg_bytes()
    (root / "carol" / "trunc.jpg").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
    (root / "carol" / "empty.jpg").write_bytes(b"")
    (root / "README").write_text("Faces of alice and bob.\n")
    (root / "notes.txt").write_text("nothing\n")
    _save(root / ".hidden.png", Image.new("RGB", (4, 4)), "PNG")
    _save(root / ".cache" / "x.png", Image.new("RGB", (4, 4)), "PNG")
    return root


def _zip(src: Path, dest: Path, wrapper: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, wrapper + p.relative_to(src).as_posix())
    return dest


def test_sniff_format_known_headers():
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "PNG"
    assert sniff_format(b"GIF89a....") == "GIF"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"P5\n92 112\n255\n") == "PPM"
    assert sniff_format(b"Pizza\n") is None
    assert sniff_format(b"The ORL face database") is None
    assert sniff_format(b"") is None


def test_scan_finds_images_by_content_and_lists_the_rest(tree: Path):
    ds = ImageFolderFaces(tree, 16)
    rels = [s.rel for s in ds.samples]
    assert rels == [
        "alice/a.png",
        "alice/b.pgm",
        "bob/c.jpg",
        "bob/deep/f.webp",
        "bob/e.png",
        "bob/subject01.centerlight",
        "carol/trunc.jpg",  # header is fine: caught at load time (or at scan with verify="full")
    ]
    assert [s.fmt for s in ds.samples] == ["PNG", "PPM", "JPEG", "WEBP", "PNG", "GIF", "JPEG"]
    assert ds.classes == ["alice", "bob", "carol"]
    assert ds.targets == [0, 0, 1, 1, 1, 1, 2]
    skipped = {Path(p).name: why for p, why in ds.skipped}
    assert set(skipped) == {"broken.png", "empty.jpg"}
    assert "not an image" in skipped["broken.png"] and "empty" in skipped["empty.jpg"]
    assert sorted(Path(p).name for p in ds.ignored) == ["README", "notes.txt"]
    everything = " ".join(rels + [p for p, _ in ds.skipped] + ds.ignored)
    assert ".hidden" not in everything and ".cache" not in everything


def test_verify_full_skips_truncated_jpeg_at_scan(tree: Path):
    ds = ImageFolderFaces(tree, 16, verify="full")
    assert "carol/trunc.jpg" not in [s.rel for s in ds.samples]
    reasons = dict((Path(p).name, why) for p, why in ds.skipped)
    assert "unreadable JPEG" in reasons["trunc.jpg"]
    assert ds.classes == ["alice", "bob"]  # carol has no readable image left


def test_truncated_jpeg_at_load_time_gives_deterministic_replacement(tree: Path):
    ds = ImageFolderFaces(tree, 16)
    i = [s.rel for s in ds.samples].index("carol/trunc.jpg")
    assert i == len(ds) - 1  # so the replacement wraps around to item 0
    n_skipped = len(ds.skipped)
    with pytest.warns(RuntimeWarning, match="trunc.jpg"):
        img, target = ds[i]
    ref_img, ref_target = ds[0]
    assert torch.equal(img, ref_img) and target == ref_target == 0
    assert len(ds.skipped) == n_skipped + 1 and "load time" in ds.skipped[-1][1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning for the same file
        again, _ = ds[i]
    assert torch.equal(again, ref_img) and len(ds.skipped) == n_skipped + 1


def test_every_item_is_rgb_in_unit_range(tree: Path):
    ds = ImageFolderFaces(tree, 16, verify="full")
    for k in range(len(ds)):
        x, t = ds[k]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert t == ds.targets[k]


def test_colour_conversions_known_values(tree: Path):
    ds = ImageFolderFaces(tree, 8)
    item = {s.rel: ds[k][0] for k, s in enumerate(ds.samples) if s.rel != "carol/trunc.jpg"}
    red = torch.tensor([200, 10, 50]).view(3, 1, 1) / 255
    assert (item["alice/a.png"] - red).abs().max() <= TOL
    grey = item["alice/b.pgm"]  # greyscale PGM: three equal channels
    assert (grey - 77 / 255).abs().max() <= TOL
    gif = item["bob/subject01.centerlight"]  # palette -> RGB
    assert (gif - torch.tensor([10, 200, 30]).view(3, 1, 1) / 255).abs().max() <= TOL
    rgba = item["bob/e.png"]  # 8x8 at resolution 8: no resampling, exact
    bg = torch.tensor(ALPHA_BACKGROUND).view(3, 1) / 255
    assert torch.equal(rgba[:, :, :4].reshape(3, -1), bg.expand(3, 32))
    assert torch.equal(rgba[:, :, 4:].reshape(3, -1), torch.tensor([0.0, 1.0, 0.0]).view(3, 1).expand(3, 32))
    webp = item["bob/deep/f.webp"]
    assert (webp - torch.tensor([5, 6, 7]).view(3, 1, 1) / 255).abs().max() <= TOL


def test_sixteen_bit_pgm_is_scaled_not_clipped(tmp_path: Path):
    arr = np.array([[0, 0x8080], [0xFFFF, 0x4040]], np.uint16)
    _save(tmp_path / "d" / "x.pgm", Image.fromarray(arr), "PPM")
    x, _ = ImageFolderFaces(tmp_path / "d", 2, preprocess="ffhq")[0]
    assert torch.allclose(x[0], torch.tensor([[0, 128], [255, 64]]) / 255.0)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def _random_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_casia_pads_112x96_with_edge_pixels(tmp_path: Path):
    arr = _random_rgb(112, 96, 1)
    _save(tmp_path / "c" / "0.png", Image.fromarray(arr), "PNG")
    x, _ = ImageFolderFaces(tmp_path / "c", 112, preprocess="casia")[0]
    got = (x.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert got.shape == (112, 112, 3)
    assert np.array_equal(got[:, 8:104], arr)  # nothing cropped, centred
    assert np.array_equal(got[:, :8], np.repeat(arr[:, :1], 8, axis=1))  # left pad = first column
    assert np.array_equal(got[:, 104:], np.repeat(arr[:, -1:], 8, axis=1))
    small, _ = ImageFolderFaces(tmp_path / "c", 32, preprocess="casia")[0]
    assert small.shape == (3, 32, 32)


def test_none_centre_crops_and_ffhq_keeps_whole_image(tmp_path: Path):
    arr = _random_rgb(30, 20, 2)
    _save(tmp_path / "n" / "0.png", Image.fromarray(arr), "PNG")
    x, _ = ImageFolderFaces(tmp_path / "n", 20, preprocess="none")[0]
    assert np.array_equal((x.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy(), arr[5:25])
    # top quarter black, rest white: a centre crop loses the black band, a resize keeps it
    band = np.full((40, 20, 3), 255, np.uint8)
    band[:10] = 0
    _save(tmp_path / "f" / "0.png", Image.fromarray(band), "PNG")
    ffhq, _ = ImageFolderFaces(tmp_path / "f", 8, preprocess="ffhq")[0]
    none, _ = ImageFolderFaces(tmp_path / "f", 8, preprocess="none")[0]
    assert float(ffhq[:, 0].max()) < 0.05 and float(ffhq[:, -1].min()) > 0.95
    assert float(none.min()) > 0.95


def test_exif_orientation_is_applied(tmp_path: Path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, 10:] = 255  # left black, right white, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    _save(tmp_path / "e" / "0.jpg", Image.fromarray(arr), "JPEG", exif=exif, quality=95)
    x, _ = ImageFolderFaces(tmp_path / "e", 10, preprocess="ffhq", output="tensor")[0]
    # after rotating 90 degrees clockwise the black half is on top
    assert float(x[:, :3].mean()) < 0.1 and float(x[:, -3:].mean()) > 0.9


def test_flat_folder_has_one_class_and_pil_output_with_transforms(tmp_path: Path):
    for k in range(3):
        _save(tmp_path / "flat" / f"{k}.png", Image.new("RGB", (6, 6), (k, k, k)), "PNG")
    ds = ImageFolderFaces(
        tmp_path / "flat", 4, output="pil", transform=lambda im: im.rotate(0), target_transform=lambda t: t + 10
    )
    assert ds.classes == ["."] and ds.targets == [0, 0, 0]
    im, t = ds[-1]
    assert isinstance(im, Image.Image) and im.mode == "RGB" and im.size == (4, 4) and t == 10
    assert im.getpixel((0, 0)) == (2, 2, 2)
    assert [ds[k][1] for k in range(len(ds))] == [10, 10, 10]
    with pytest.raises(IndexError):
        ds[3]
    assert len(list(iter(ds))) == 3  # the old iteration protocol stops on IndexError


def test_mixed_root_and_subfolder_images(tmp_path: Path):
    _save(tmp_path / "m" / "top.png", Image.new("RGB", (4, 4)), "PNG")
    _save(tmp_path / "m" / "zed" / "a.png", Image.new("RGB", (4, 4)), "PNG")
    ds = ImageFolderFaces(tmp_path / "m", 4)
    assert ds.classes == [".", "zed"] and ds.targets == [0, 1]


def test_repr_is_informative(tree: Path):
    r = repr(ImageFolderFaces(tree, 16, preprocess="casia"))
    for part in (str(tree), "folder", "images=7", "classes=3", "'alice'", "preprocess='casia'", "skipped=2", "ignored=2"):
        assert part in r


@pytest.mark.parametrize("wrapper", ["", "faces/"])
def test_zip_reads_like_the_folder(tree: Path, tmp_path: Path, wrapper: str):
    folder = ImageFolderFaces(tree, 16, preprocess="casia")
    zds = ImageFolderFaces(_zip(tree, tmp_path / "faces.zip", wrapper), 16, preprocess="casia")
    assert zds.is_zip and not folder.is_zip
    assert [s[:2] for s in zds.samples] == [s[:2] for s in folder.samples]
    assert zds.classes == folder.classes and zds.targets == folder.targets
    assert sorted(Path(p).name for p, _ in zds.skipped) == sorted(Path(p).name for p, _ in folder.skipped)
    for k in range(len(folder) - 1):  # the last is the truncated JPEG
        assert torch.equal(zds[k][0], folder[k][0])
    assert "zip" in repr(zds)


def test_zip_with_dataloader_workers_after_parent_opened_it(tree: Path, tmp_path: Path):
    ds = ImageFolderFaces(_zip(tree, tmp_path / "faces.zip"), 16, verify="full")
    expected = torch.stack([ds[k][0] for k in range(len(ds))])  # the parent now holds an open handle
    assert ds._zip is not None
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    got = torch.cat([x for x, _ in loader])
    assert torch.equal(got, expected)
    clone = copy.deepcopy(ds)  # goes through __getstate__ as a spawn-style transfer does: no handle travels
    assert clone._zip is None and torch.equal(clone[1][0], expected[1])
    ds.close()
    assert torch.equal(ds[2][0], expected[2])  # reopened lazily


def test_missing_empty_and_junk_roots_are_one_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not found: .*nowhere"):
        ImageFolderFaces(tmp_path / "nowhere", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no readable images in .*empty \(0 files"):
        ImageFolderFaces(tmp_path / "empty", 16)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("not a png")
    (tmp_path / "junk" / "README").write_text("hello")
    with pytest.raises(ValueError, match=r"no readable images .*1 broken, first: .*a\.png"):
        ImageFolderFaces(tmp_path / "junk", 16)
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a folder nor a .zip"):
        ImageFolderFaces(tmp_path / "file.txt", 16)
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="bad.zip"):
        ImageFolderFaces(tmp_path / "bad.zip", 16)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    with pytest.raises(ValueError, match="no readable images in .*empty.zip"):
        ImageFolderFaces(tmp_path / "empty.zip", 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resolution": 0}, "resolution"),
        ({"resolution": "64"}, "resolution"),
        ({"resolution": True}, "resolution"),
        ({"preprocess": "vgg"}, "preprocess='vgg'.*'casia'"),
        ({"output": "numpy"}, "output"),
        ({"verify": "never"}, "verify"),
    ],
)
def test_bad_arguments(tree: Path, kwargs: dict, match: str):
    args = {"resolution": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        ImageFolderFaces(tree, **args)


# ------------------------------------------------------------ real faces in ../shared/data
def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def test_att_faces_pgm_with_readme():
    ds = ImageFolderFaces(_shared("att_faces"), 32)
    assert len(ds) == 400 and len(ds.classes) == 40 and ds.skipped == []
    assert [Path(p).name for p in ds.ignored] == ["README"]
    assert all(s.fmt == "PPM" for s in ds.samples)
    x, t = ds[123]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[2])  # grey faces
    assert ds.classes[t] == ds.samples[123].rel.split("/")[0]


def test_yalefaces_gif_without_extension():
    root = _shared("yalefaces")
    ds = ImageFolderFaces(root, 32, preprocess="none")
    n_files = sum(1 for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    assert len(ds) == n_files and all(s.fmt == "GIF" for s in ds.samples)
    x, _ = ds[0]
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) < float(x.max()) <= 1.0


def test_celeba_crops_and_extended_yaleb():
    celeba = ImageFolderFaces(_shared("celeba_crops64"), 64, output="pil")
    assert len(celeba) == 15 and celeba[0][0].size == (64, 64)
    root = _shared("extended_yaleb_cropped")
    yb = ImageFolderFaces(root, 16)
    assert len(yb) + len(yb.skipped) == sum(1 for _ in root.rglob("*.pgm"))
    assert len(yb.classes) == 38


def test_content_wins_over_a_wrong_extension(tmp_path: Path):
    _save(tmp_path / "w" / "really_a_png.jpg", Image.new("RGB", (5, 5), (9, 99, 199)), "PNG")
    ds = ImageFolderFaces(tmp_path / "w", 5)
    assert ds.samples[0].fmt == "PNG" and ds.skipped == []
    assert torch.equal(ds[0][0][:, 0, 0], torch.tensor([9, 99, 199]) / 255.0)


def test_images_below_min_size_are_skipped_and_the_run_says_where_the_list_is(tmp_path: Path):
    from facedis_aug.pipeline import report_data
    from facedis_aug.recipe import load_recipe

    root = tmp_path / "faces"
    root.mkdir()
    _save(root / "ok.png", Image.new("RGB", (32, 32), (10, 20, 30)), "PNG")
    _save(root / "dot.png", Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")
    _save(root / "thin.png", Image.new("RGB", (200, 8), (10, 20, 30)), "PNG")
    (root / "notes.png").write_text("not an image")
    ds = ImageFolderFaces(root, resolution=16, min_size=16)
    assert len(ds) == 1
    reasons = dict(ds.skipped)
    assert reasons[str(root / "dot.png")] == "too small (1x1; min_size is 16 px)" and "200x8" in reasons[str(root / "thin.png")]
    assert len(ImageFolderFaces(root, resolution=16)) == 3  # the library default keeps every size
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml", ["data.source=folder", f"data.path={root}"])
    line = report_data(recipe, tmp_path)
    assert line == f"data: 1 images from {root}, 3 skipped (list: {tmp_path / 'data_skipped.txt'})"
    listed = (tmp_path / "data_skipped.txt").read_text().splitlines()
    assert len(listed) == 3 and any(x.startswith(str(root / "dot.png") + "\ttoo small") for x in listed)


def test_a_folder_is_checked_once_per_process_until_its_files_change(tmp_path: Path, monkeypatch):
    root = tmp_path / "faces"
    root.mkdir()
    _save(root / "a.png", Image.new("RGB", (32, 32), (10, 20, 30)), "PNG")
    (root / "b.png").write_text("not an image")
    calls = []
    real = ImageFolderFaces._check_all
    monkeypatch.setattr(ImageFolderFaces, "_check_all", lambda self, c: calls.append(len(c)) or real(self, c))
    first = ImageFolderFaces(root, resolution=16)
    again = ImageFolderFaces(root, resolution=16)  # the pipeline's data report, then the gan stage
    assert calls == [2] and len(again) == len(first) == 1 and again.skipped == first.skipped
    again.skipped.append(("x", "y"))  # each dataset owns its lists
    assert len(ImageFolderFaces(root, resolution=16).skipped) == 1
    # a changed file, a new file or other settings are checked again
    _save(root / "b.png", Image.new("RGB", (32, 32), (1, 2, 3)), "PNG")
    assert len(ImageFolderFaces(root, resolution=16)) == 2 and calls == [2, 2]
    ImageFolderFaces(root, resolution=16, min_size=20)
    assert calls == [2, 2, 2]
