"""Real face images from a folder tree or a .zip: `ImageFolderFaces`, a torchvision-style Dataset.

    ds = ImageFolderFaces("../shared/data/att_faces", resolution=64)
    image, target = ds[0]          # image: float32 [3, 64, 64] in [0, 1]; target: class index

Files are recognised by their content (magic bytes, then a PIL header parse), not by their name:
the Yale faces are GIFs called `subject01.centerlight`, the AT&T faces are PGM. Supported formats:
JPEG, PNG, GIF (first frame), WEBP, PGM/PPM/PBM, BMP.

What is not used, and why, is kept on the dataset:
- `skipped`: list of (path, reason) for broken images: a file named like an image whose content is
  not one (a text file called `x.png`), an image whose header cannot be parsed, with
  `verify="full"` one that cannot be decoded (a truncated JPEG), and, at load time, any file that
  still fails to decode (see below).
- `ignored`: paths of files that are neither named nor shaped like images (README, notes.txt).
  Hidden files and folders (name starting with '.') and `__MACOSX` are not looked at at all.

Scan-time checking is cheap by default (`verify="header"`: magic bytes + header parse, no pixel
decoding), because a full decode of a 500k-image CASIA folder takes tens of minutes on a laptop.
A file that passes the header check but fails to decode when it is loaded (a truncated JPEG) never
crashes an epoch: `__getitem__` records it in `skipped`, warns once, and returns the next loadable
item (index + 1, + 2, ... modulo len), which is a deterministic replacement. In DataLoader workers
that record lives in the worker's copy of the dataset; `verify="full"` catches such files up front.

Classes follow torchvision's ImageFolder: the top-level sub-folder of an image is its class and
`target` indexes `classes` (sorted names). Images directly in the root belong to the class "."
(listed first), so a flat folder has `classes == ["."]` and every target 0. A zip whose members all
sit under one folder (`zip -r faces.zip faces/`) is read as that folder.

Geometry (`preprocess`), applied before resizing to `resolution` x `resolution` (LANCZOS):
- "none":  centre-crop to a square (the shorter side), then resize.
- "casia": aligned CASIA-WebFace crops are 112x96 (H x W). They are padded to a square, never
  cropped (an aligned crop has no spare pixels), by EDGE replication: constant (black) bars would be
  a hard vertical edge at the same place in every training image, which the GAN must learn to draw
  and the 3D decomposer would try to explain as face geometry or albedo; replicated border pixels
  keep the background statistics continuous. Other sizes are padded the same way.
- "ffhq":  FFHQ images are already square aligned faces: plain resize of the whole image.
Colour: greyscale, palette, 16-bit and CMYK become RGB; transparency (RGBA, LA, palette with a
transparent index) is composited over mid-grey (128), which is 0 in the models' [-1, 1] range.
EXIF orientation is applied.
"""
from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, Optional

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".pgm", ".ppm", ".pbm", ".pnm", ".bmp"}
)
PREPROCESS_CHOICES = ("none", "casia", "ffhq")
OUTPUT_CHOICES = ("tensor", "pil")
VERIFY_CHOICES = ("header", "full")
ALPHA_BACKGROUND = (128, 128, 128)  # transparent pixels become mid-grey (0 in [-1, 1])
_HEAD_BYTES = 16
# The check opens every file, and one process builds the same folder source more than once (the
# pipeline's data report, then the gan stage): a check of unchanged files is reused.
_CHECKED: dict[tuple, tuple[list, list, list]] = {}
_CHECKED_MAX = 4


class Sample(NamedTuple):
    rel: str  # path relative to the root (folder), or to the zip's wrapping folder (zip)
    fmt: str  # PIL format name found by sniffing: JPEG, PNG, GIF, WEBP, PPM, BMP
    target: int


def sniff_format(head: bytes) -> Optional[str]:
    """PIL format name of an image from its first bytes, or None when it is not a supported image."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    # Netpbm: P1..P6 then whitespace or a comment (PIL calls the whole family "PPM")
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6") and head[2:3] in (
        b" ", b"\t", b"\r", b"\n", b"#"
    ):
        return "PPM"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    return None


def _is_hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency composited over `ALPHA_BACKGROUND`."""
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        # PIL scales 16-bit PGM/PNG samples to 0..65535; convert("L") would clip at 255 instead
        arr = np.asarray(im).astype(np.float64) / 257.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def _square(im: Image.Image, preprocess: str) -> Image.Image:
    w, h = im.size
    if preprocess == "none" and w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return im.crop((left, top, left + s, top + s))
    if preprocess == "casia" and w != h:
        s = max(w, h)
        pl, pt = (s - w) // 2, (s - h) // 2
        arr = np.asarray(im)
        arr = np.pad(arr, ((pt, s - h - pt), (pl, s - w - pl), (0, 0)), mode="edge")
        return Image.fromarray(arr, mode="RGB")
    return im  # "ffhq" (and squares): the whole image is resized


def prepare_face(im: Image.Image, preprocess: str, resolution: int) -> Image.Image:
    """An RGB image at its stored geometry -> resolution x resolution by `preprocess` (module doc), LANCZOS."""
    im = _square(im, preprocess)
    if im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return im


def pil_to_tensor01(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 [3, H, W] in [0, 1]."""
    arr = np.array(im, dtype=np.uint8, copy=True)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().float().div_(255.0)


class ReplacingFaces(Dataset):
    """`(image, target)` items that never fail mid-epoch: an item that does not decode is recorded by
    `_record_failure` and replaced by the next loadable one (index + 1, + 2, ... modulo len).

    Subclasses give `load_rgb(j)` (RGB PIL at stored geometry, raising when broken), `_record_failure(j, e)`
    (adding j to `_failed`), `targets`, and the attributes preprocess, resolution, output, transform,
    target_transform and `_failed` (a set)."""

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        n = len(self.targets)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        for k in range(n):
            j = (index + k) % n
            if j in self._failed:
                continue
            try:
                im = self.load_rgb(j)
            except Exception as e:  # decoding only: transforms below are not guarded
                self._record_failure(j, e)
                continue
            im = prepare_face(im, self.preprocess, self.resolution)
            image: Any = pil_to_tensor01(im) if self.output == "tensor" else im
            target: Any = self.targets[j]
            if self.transform is not None:
                image = self.transform(image)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return image, target
        raise RuntimeError(f"none of the {n} images of {self!r} could be decoded; last: {self.skipped[-1]}")


class ImageFolderFaces(ReplacingFaces):
    """Face images under `root` (a folder, searched recursively, or a .zip), as [3, R, R] in [0, 1].

    Args:
        root: folder or .zip file.
        resolution: output side R in pixels.
        preprocess: "none" | "casia" | "ffhq" (see the module docstring).
        output: "tensor" (float32 [3, R, R] in [0, 1]) or "pil" (RGB PIL image R x R).
        transform, target_transform: applied to the image / target after the above.
        verify: "header" (cheap scan) or "full" (decode every image while scanning).
        min_size: images with a side below this many pixels are skipped (listed in `skipped`).

    Items are `(image, target)`. Attributes: `root`, `is_zip`, `samples` (list of `Sample`),
    `targets`, `classes`, `class_to_idx`, `skipped` (list of (path, reason)), `ignored` (paths).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        resolution: int,
        preprocess: Literal["none", "casia", "ffhq"] = "none",
        output: Literal["tensor", "pil"] = "tensor",
        transform: Optional[Callable[[Any], Any]] = None,
        target_transform: Optional[Callable[[int], Any]] = None,
        verify: Literal["header", "full"] = "header",
        min_size: int = 1,
    ):
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size must be a positive int, got {min_size!r}")
        self.min_size = min_size
        for name, value, choices in (
            ("preprocess", preprocess, PREPROCESS_CHOICES),
            ("output", output, OUTPUT_CHOICES),
            ("verify", verify, VERIFY_CHOICES),
        ):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not valid; choices: {', '.join(map(repr, choices))}")
        self.root = Path(root).expanduser()
        self.resolution = resolution
        self.preprocess = preprocess
        self.output = output
        self.transform = transform
        self.target_transform = target_transform
        self.verify = verify
        self.skipped: list[tuple[str, str]] = []
        self.ignored: list[str] = []
        self._failed: set[int] = set()  # indices that failed to decode at load time
        self._zip: Optional[zipfile.ZipFile] = None
        self._zip_pid: Optional[int] = None
        self._prefix = ""  # a zip's single wrapping folder, "faces/" (see _list_zip)

        if not self.root.exists():
            raise FileNotFoundError(f"image folder or zip not found: {self.root}")
        if self.root.is_dir():
            self.is_zip = False
            candidates = self._walk_folder()
        elif zipfile.is_zipfile(self.root):
            self.is_zip = True
            candidates = self._list_zip()
        else:
            raise ValueError(f"{self.root} is neither a folder nor a .zip archive")
        key = self._check_key(candidates)
        if key in _CHECKED:
            found, skipped, ignored = (list(x) for x in _CHECKED[key])
            self.skipped, self.ignored = skipped, ignored
        else:
            found = self._check_all(candidates)
            _CHECKED[key] = (list(found), list(self.skipped), list(self.ignored))
            while len(_CHECKED) > _CHECKED_MAX:
                _CHECKED.pop(next(iter(_CHECKED)))
        if not found:
            detail = f"; {len(self.skipped)} broken, first: {self.skipped[0][0]} ({self.skipped[0][1]})" if self.skipped else ""
            raise ValueError(f"no readable images in {self.root} ({len(candidates)} files looked at{detail})")

        top = sorted({rel.split("/")[0] for rel, _ in found if "/" in rel})
        self.classes: list[str] = (["."] if any("/" not in rel for rel, _ in found) else []) + top
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[Sample] = [
            Sample(rel, fmt, self.class_to_idx[rel.split("/")[0] if "/" in rel else "."]) for rel, fmt in found
        ]
        self.targets = [s.target for s in self.samples]

    # ----------------------------------------------------------------- scanning
    def _walk_folder(self) -> list[str]:
        out: list[str] = []
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a symlink loop: do not descend again
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for f in filenames:
                if _is_hidden(f):
                    continue
                rel = f if rel_dir == "." else f"{rel_dir}/{f}"
                if os.path.isfile(os.path.join(dirpath, f)):
                    out.append(rel)
        return sorted(out)

    def _list_zip(self) -> list[str]:
        try:
            with zipfile.ZipFile(self.root) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
        except zipfile.BadZipFile as e:
            raise ValueError(f"{self.root} is not a readable zip archive: {e}") from None
        names = sorted(n for n in names if not any(_is_hidden(p) for p in n.split("/") if p))
        # one wrapping folder (zip -r faces.zip faces/) is read as the folder itself
        firsts = {n.split("/")[0] for n in names}
        if len(firsts) == 1 and all("/" in n for n in names):
            self._prefix = next(iter(firsts)) + "/"
        return [n[len(self._prefix) :] for n in names]

    def _display(self, rel: str) -> str:
        return f"{self.root}/{self._prefix}{rel}" if self.is_zip else str(self.root / rel)

    def _read_head(self, rel: str, zf: Optional[zipfile.ZipFile]) -> bytes:
        if zf is not None:
            with zf.open(self._prefix + rel) as f:
                return f.read(_HEAD_BYTES)
        with open(self.root / rel, "rb") as f:
            return f.read(_HEAD_BYTES)

    def _check_key(self, candidates: list[str]) -> tuple:
        """What the check's result depends on: the settings and every candidate's size, mtime and mode
        (for a zip, the archive's)."""
        if self.is_zip:
            st = self.root.stat()
            files: tuple = (st.st_size, st.st_mtime_ns, tuple(candidates))
        else:
            stats = []
            for rel in candidates:
                try:
                    st = (self.root / rel).stat()
                    stats.append((rel, st.st_size, st.st_mtime_ns, st.st_mode))
                except OSError:
                    stats.append((rel, -1, -1, -1))
            files = tuple(stats)
        return (str(self.root.resolve()), self.is_zip, self.min_size, self.verify, files)

    def _check_all(self, candidates: list[str]) -> list[tuple[str, str]]:
        """(rel, format) of the candidates that pass the check; the others go to skipped/ignored."""
        found: list[tuple[str, str]] = []
        zf = zipfile.ZipFile(self.root) if self.is_zip else None
        try:
            for rel in candidates:
                named_image = Path(rel).suffix.lower() in IMAGE_EXTENSIONS
                try:
                    head = self._read_head(rel, zf)
                except Exception as e:  # permissions, bad zip member, ...
                    self.skipped.append((self._display(rel), f"cannot read file: {e}"))
                    continue
                fmt = sniff_format(head)
                if fmt is None:
                    if named_image:
                        why = "empty file" if not head else "not an image: content matches no supported format"
                        self.skipped.append((self._display(rel), why))
                    else:
                        self.ignored.append(self._display(rel))
                    continue
                try:
                    with self._open(rel, fmt, zf) as im:
                        if min(im.size) < self.min_size:
                            self.skipped.append((self._display(rel), f"too small ({im.size[0]}x{im.size[1]}; "
                                                 f"min_size is {self.min_size} px)"))
                            continue
                        if self.verify == "full":
                            im.load()
                except Exception as e:
                    self.skipped.append((self._display(rel), f"unreadable {fmt}: {e}"))
                    continue
                found.append((rel, fmt))
        finally:
            if zf is not None:
                zf.close()
        return found

    # ------------------------------------------------------------------ loading
    def _zipfile(self) -> zipfile.ZipFile:
        # opened lazily and once per process: a handle inherited through fork shares its file
        # offset with the parent, so DataLoader workers must each open their own
        pid = os.getpid()
        if self._zip is None or self._zip_pid != pid:
            self._zip = zipfile.ZipFile(self.root)
            self._zip_pid = pid
        return self._zip

    def _open(self, rel: str, fmt: str, zf: Optional[zipfile.ZipFile] = None) -> Image.Image:
        if self.is_zip:
            data = (zf or self._zipfile()).read(self._prefix + rel)
            return Image.open(io.BytesIO(data), formats=[fmt])
        return Image.open(self.root / rel, formats=[fmt])

    def load_rgb(self, index: int) -> Image.Image:
        """Decode sample `index` to RGB at native geometry (no crop/resize). Raises on a broken file."""
        s = self.samples[index]
        with self._open(s.rel, s.fmt) as im:
            # JPEG only: decode at a reduced DCT scale that still keeps both sides >= R (faster)
            im.draft(None, (self.resolution, self.resolution))
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb(im).copy()

    def __len__(self) -> int:
        return len(self.samples)

    def _record_failure(self, j: int, e: BaseException) -> None:
        s = self.samples[j]
        path = self._display(s.rel)
        reason = f"failed to decode {s.fmt} at load time: {e}"
        self._failed.add(j)
        self.skipped.append((path, reason))
        warnings.warn(f"ImageFolderFaces: skipping {path} ({reason}); using the next image instead", RuntimeWarning)

    # ------------------------------------------------------------------- misc
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zip"] = None  # never pickle an open handle (spawned workers open their own)
        state["_zip_pid"] = None
        return state

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None
        self._zip_pid = None

    def __repr__(self) -> str:
        shown = ", ".join(repr(c) for c in self.classes[:5]) + (", ..." if len(self.classes) > 5 else "")
        return (
            f"{type(self).__name__}(root='{self.root}', {'zip' if self.is_zip else 'folder'}, "
            f"images={len(self)}, classes={len(self.classes)} [{shown}], resolution={self.resolution}, "
            f"preprocess='{self.preprocess}', output='{self.output}', skipped={len(self.skipped)}, "
            f"ignored={len(self.ignored)}, transform={self.transform!r})"
        )
