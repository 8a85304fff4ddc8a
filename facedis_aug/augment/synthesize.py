"""Write a synthetic face set to disk: an image folder, an insightface `.rec/.idx` pair, or WebDataset shards.

    facedis-aug synthesize --bundle B --out OUT --identities 1000 --per-identity 16 --format rec --crop arcface

    report = synthesize(SyntheticPoseFaces("bundle/", 1000, 16), "out/", fmt="folder", crop="arcface")

Layouts (OUT):
- folder: `OUT/<identity>/<n>.jpg` (torchvision ImageFolder / `ImageFolderFaces` read it);
- rec: `OUT/train.rec` + `OUT/train.idx` in insightface's layout (record 0 a header, images at keys
  1..N with the identity as label, one identity record per class; `RecordFaces` and arcface_torch's
  reader take it);
- wds: `OUT/shard-000000.tar`, ... written with the `webdataset` library (`jpg`, `cls`, `json` per
  sample).
Beside them `OUT/labels.jsonl`: one line per image with its index, identity, asked yaw, delivered yaw
(the bundle's own view head on the written image), seed and the bundle's manifest hash.

Crops (`crop`, `size`): "arcface" 112 x 112 (`size` sets the side), "casia" 112 x 96 (H x W: the square
render resized to 112 and its central 96 columns kept), "none" a square of `size` (default: the
bundle's resolution).

Resumable: work goes in chunks (a batch, or a shard for wds); a chunk's lines enter labels.jsonl only
after its files are complete, so re-running the same command continues after the last complete chunk,
and what is rewritten is the same bytes (every draw depends only on the seed and the index). The rec
pair is written as `.partial` files and renamed when complete. Per seed the output is deterministic.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.recordio import RecordWriter, pack_payload
from ..ops.resize import resize_bilinear
from .synthetic import SyntheticPoseFaces

FORMATS = ("folder", "rec", "wds")
CROPS = ("arcface", "casia", "none")
LABELS = "labels.jsonl"


def crop_geometry(crop: str, size: int | None, resolution: int) -> tuple[int, int]:
    """(H, W) of the written images for a crop convention (module doc)."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}; got {crop!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 8):
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if crop == "arcface":
        s = size or 112
        return s, s
    if crop == "casia":
        h = size or 112
        return h, round(h * 96 / 112)
    s = size or resolution
    return s, s


def to_crop(images: Tensor, hw: tuple[int, int]) -> Tensor:
    """images [B, 3, R, R] in [0, 1] -> [B, 3, H, W]: resized to H x H, then the central W columns."""
    h, w = hw
    x = resize_bilinear(images, h)
    left = (h - w) // 2
    return x[..., left:left + w].clamp(0, 1)


def _jpeg(image: Tensor, quality: int) -> bytes:
    arr = (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _done_lines(path: Path) -> list[dict[str, Any]]:
    """Lines of a labels.jsonl written by an earlier run (a torn last line, from a crash, is dropped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def synthesize(
    ds: SyntheticPoseFaces,
    out: str | os.PathLike,
    fmt: Literal["folder", "rec", "wds"] = "folder",
    crop: str = "none",
    size: int | None = None,
    chunk: int = 256,
    shard_size: int = 1000,
    quality: int = 95,
    label_offset: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write every sample of `ds` under `out` (module doc); returns a report (counts, paths, seconds).

    label_offset is added to identities (e.g. the real classes when the set complements a real one)."""
    import time

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    hw = crop_geometry(crop, size, ds.spec.resolution)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels_path = out / LABELS
    bundle_hash = hashlib.sha256((ds.spec.path / "manifest.json").read_bytes()).hexdigest()
    done = _done_lines(labels_path)
    if done and (done[0].get("bundle_sha256") != bundle_hash or done[0].get("seed") != ds.seed):
        raise ValueError(f"{labels_path}: written from another bundle or seed; use a new --out folder")
    n = len(ds)
    step = shard_size if fmt == "wds" else chunk
    start = len(done) - len(done) % step if fmt == "wds" else len(done)
    done = done[:start]
    with open(labels_path, "w") as f:  # keep only whole chunks (a torn line or a half shard is redone)
        f.writelines(json.dumps(d) + "\n" for d in done)
    writer = _RecAppender(out, done) if fmt == "rec" else None

    from tqdm import tqdm

    bar = tqdm(total=n, initial=start, unit="img", desc=f"synthesize ({fmt})", disable=not progress)
    t0 = time.time()
    with open(labels_path, "a") as log:
        for a in range(start, n, step):
            idx = list(range(a, min(a + step, n)))
            images, _, plans = ds.render(idx)
            delivered = ds.engine.view(images * 2 - 1)[:, 0].tolist()
            crops = to_crop(images, hw)
            lines = [{"index": i, "identity": p["identity"] + label_offset, "asked_yaw": round(p["yaw"], 3),
                      "delivered_yaw": round(float(y), 3), "seed": ds.seed, "bundle_sha256": bundle_hash}
                     for i, p, y in zip(idx, plans, delivered)]
            blobs = [_jpeg(c, quality) for c in crops]
            if fmt == "folder":
                for line, blob in zip(lines, blobs):
                    rel = f"{line['identity']}/{line['index']}.jpg"
                    path = out / rel
                    path.parent.mkdir(exist_ok=True)
                    tmp = path.with_name(path.name + ".partial")
                    tmp.write_bytes(blob)
                    os.replace(tmp, path)
                    line["path"] = rel
            elif fmt == "rec":
                assert writer is not None
                for line, blob in zip(lines, blobs):
                    line["key"], line["offset"], line["end"] = writer.add(line["index"] + 1, pack_payload(float(line["identity"]), blob))
                writer.flush()
            else:
                _write_shard(out / f"shard-{a // step:06d}.tar", lines, blobs)
            log.writelines(json.dumps(d) + "\n" for d in lines)
            log.flush()
            os.fsync(log.fileno())
            bar.update(len(idx))
    bar.close()
    if writer is not None:
        writer.finish(_done_lines(labels_path))
    seconds = time.time() - t0
    return {"format": fmt, "images": n, "written": n - start, "size_hw": list(hw), "out": str(out),
            "seconds": round(seconds, 2), "images_per_s": round((n - start) / seconds, 1) if seconds > 0 and n > start else None}


def _write_shard(path: Path, lines: list[dict[str, Any]], blobs: list[bytes]) -> None:
    import webdataset as wds

    tmp = path.with_name(path.name + ".partial")
    with wds.TarWriter(str(tmp)) as sink:
        for line, blob in zip(lines, blobs):
            sink.write({"__key__": f"{line['index']:09d}", "jpg": blob, "cls": line["identity"], "json": line})
    os.replace(tmp, path)
    for line in lines:
        line["shard"] = path.name


class _RecAppender:
    """An insightface face set in OUT/train.rec: image records appended by a `RecordWriter` that
    resumes where the labels log ends (its .partial is kept across runs), then the header and
    identity records at `finish`."""

    def __init__(self, out: Path, done: list[dict[str, Any]]):
        end = max((d["end"] for d in done), default=0)
        offsets = {int(d["key"]): int(d["offset"]) for d in done}
        try:
            self.writer = RecordWriter(out / "train.rec", resume_at=end if done else None, offsets=offsets)
        except ValueError as e:
            raise ValueError(f"{e} (as {out / LABELS} says); use a new --out folder") from None

    def add(self, key: int, payload: bytes) -> tuple[int, int, int]:
        return (key, *self.writer.write(key, payload))

    def flush(self) -> None:
        self.writer.flush()

    def finish(self, lines: list[dict[str, Any]]) -> None:
        """Header (key 0) and identity records at the end of the file, then the .idx and the renames."""
        n = len(lines)
        ids: dict[int, list[int]] = {}
        for d in lines:
            ids.setdefault(int(d["identity"]), []).append(int(d["key"]))
        self.writer.write(0, pack_payload([n + 1, n + 1 + len(ids)], b""))
        for j, ident in enumerate(sorted(ids)):
            keys = ids[ident]
            self.writer.write(n + 1 + j, pack_payload([min(keys), max(keys) + 1], b""))
        self.writer.close()
