"""insightface / MXNet RecordIO face sets (`train.rec` + `train.idx`) without MXNet: `RecordFaces`
reads them, `RecordWriter` writes them.

    ds = RecordFaces("faces_webface_112x112/train.rec", resolution=64, preprocess="none")
    image, label = ds[0]           # float32 [3, 64, 64] in [0, 1], int class label

The format, from MXNet's public description (dmlc-core recordio, mxnet.recordio):
- a record is uint32 magic 0xced7230a, uint32 lrecord (top 3 bits: continuation flag, low 29 bits:
  payload length), the payload, zero padding to a multiple of 4 bytes. A payload that holds the magic
  at an aligned position is split there into parts with flags 1 (first), 2 (middle), 3 (last); the
  reader joins the parts with the magic put back between them. Flag 0: a whole record.
- `.idx`: text lines "key<TAB>byte offset" of each record's header.
- a payload is IRHeader (struct "<IfQQ": flag, label, id, id2; 24 bytes), then `flag` float32 labels
  when flag > 0 (the header's own label is then unused), then the image bytes (JPEG in insightface).
- insightface's face sets: record 0 is a header whose labels (flag 2) say that the images are keys
  1 .. label[0] - 1 and identity records follow up to label[1]; without that flag every key is an
  image. The class of an image is its label (the first one when there are several).

Broken input never crashes an epoch: a missing `.idx` is rebuilt by scanning the `.rec` (and said);
an index entry past the end of the file, a bad magic number or an unreadable header is found when
the dataset is built and listed in `skipped` as (file#key, reason); a record that fails later (a
truncated payload, a payload that is not an image) is listed then, warned once, and replaced by the
next readable one, as `ImageFolderFaces` does. The file is opened once per process, so the dataset
is safe in DataLoader workers.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal, Optional, Sequence

from PIL import Image, ImageOps

from .folder import OUTPUT_CHOICES, PREPROCESS_CHOICES, ReplacingFaces, sniff_format, to_rgb

MAGIC = 0xCED7230A
_HEAD = struct.Struct("<II")
IR_FORMAT = struct.Struct("<IfQQ")  # IRHeader: flag, label, id, id2
_LEN_MASK = (1 << 29) - 1


class RecordError(ValueError):
    """A record that cannot be read; the message names the file and the record key."""


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def read_record(f: BinaryIO, offset: int, where: str = "") -> bytes:
    """The payload of the record whose header is at `offset` (parts joined); RecordError if broken."""
    f.seek(offset)
    parts: list[bytes] = []
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise RecordError(f"{where}: truncated record header at byte {f.tell() - len(head)}")
        magic, lrec = _HEAD.unpack(head)
        if magic != MAGIC:
            raise RecordError(f"{where}: bad magic number 0x{magic:08x} at byte {f.tell() - 8} (expected 0x{MAGIC:08x})")
        cflag, length = lrec >> 29, lrec & _LEN_MASK
        data = f.read(_pad4(length))
        if len(data) < length:
            raise RecordError(f"{where}: truncated record: {len(data)} of {length} payload bytes")
        parts.append(data[:length])
        if cflag in (0, 3):
            return MAGIC.to_bytes(4, "little").join(parts)
        if cflag not in (1, 2):
            raise RecordError(f"{where}: bad continuation flag {cflag}")


def unpack_header(payload: bytes, where: str = "") -> tuple[tuple[int, Any, int, int], bytes]:
    """IRHeader (flag, label, id, id2) and the rest of the payload; label is a float, or a tuple of floats when flag > 0."""
    if len(payload) < IR_FORMAT.size:
        raise RecordError(f"{where}: payload of {len(payload)} bytes is shorter than the 24-byte IRHeader")
    flag, label, id1, id2 = IR_FORMAT.unpack_from(payload)
    rest = payload[IR_FORMAT.size:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise RecordError(f"{where}: IRHeader says {flag} labels but the payload holds {len(rest) // 4}")
        label = struct.unpack_from(f"<{flag}f", rest)
        rest = rest[4 * flag:]
    return (flag, label, id1, id2), rest


def pack_payload(label: float | Sequence[float], data: bytes, id1: int = 0, id2: int = 0) -> bytes:
    """IRHeader + data, as mxnet.recordio.pack: a sequence label is stored after the header (flag = its length)."""
    if isinstance(label, (int, float)):
        return IR_FORMAT.pack(0, float(label), id1, id2) + data
    labels = [float(v) for v in label]
    return IR_FORMAT.pack(len(labels), 0.0, id1, id2) + struct.pack(f"<{len(labels)}f", *labels) + data


def frame_record(payload: bytes) -> bytes:
    """The bytes of one record holding `payload`: split at aligned copies of the magic (dmlc-core's rule),
    each part with its header and zero padding to 4 bytes."""
    magic = MAGIC.to_bytes(4, "little")
    out, start, first = [], 0, True

    def part(cflag: int, data: bytes) -> None:
        if len(data) > _LEN_MASK:
            raise ValueError(f"record part of {len(data)} bytes is too long for RecordIO (max {_LEN_MASK})")
        out.append(_HEAD.pack(MAGIC, (cflag << 29) | len(data)) + data + b"\0" * (_pad4(len(data)) - len(data)))

    n = len(payload)
    for i in range(0, n - n % 4, 4):
        if payload[i:i + 4] == magic:
            part(1 if first else 2, payload[start:i])
            start, first = i + 4, False
    part(0 if first else 3, payload[start:])
    return b"".join(out)


class RecordWriter:
    """Write a `.rec` + `.idx` pair record by record (`write(key, payload)`), as MXNet's writer does.

    Written under temporary names and renamed on `close()` (or leaving the `with` block without an
    error), so a crash never leaves a pair that looks complete. `resume_at=END` continues an
    interrupted writer: its `.rec.partial` is cut back to END bytes (the end of the last record the
    caller logged as written) and `offsets` (key -> offset of those records) are kept for the `.idx`."""

    def __init__(self, rec_path: str | os.PathLike, resume_at: int | None = None, offsets: dict[int, int] | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = self.rec_path.with_suffix(".idx")
        self._tmp_rec = self.rec_path.with_name(self.rec_path.name + ".partial")
        self._tmp_idx = self.idx_path.with_name(self.idx_path.name + ".partial")
        if resume_at is None:
            self._rec = open(self._tmp_rec, "wb")
        else:
            size = self._tmp_rec.stat().st_size if self._tmp_rec.is_file() else -1
            if size < resume_at:
                raise ValueError(f"{self._tmp_rec}: {'missing' if size < 0 else f'{size} bytes'}, but {resume_at} were "
                                 "written before the interruption; start again in a new folder")
            self._rec = open(self._tmp_rec, "r+b")
            self._rec.truncate(resume_at)
            self._rec.seek(resume_at)
        self.offsets: dict[int, int] = dict(offsets or {})

    @property
    def count(self) -> int:
        return len(self.offsets)

    def write(self, key: int, payload: bytes) -> tuple[int, int]:
        """Append one record; returns its (start, end) byte offsets in the .rec."""
        offset = self._rec.tell()
        self._rec.write(frame_record(payload))
        self.offsets[int(key)] = offset
        return offset, self._rec.tell()

    def flush(self) -> None:
        """Make what was written so far durable (a resumed writer may rely on it)."""
        self._rec.flush()
        os.fsync(self._rec.fileno())

    def close(self) -> None:
        self.flush()
        self._rec.close()
        with open(self._tmp_idx, "w") as f:
            f.writelines(f"{k}\t{self.offsets[k]}\n" for k in sorted(self.offsets))
            f.flush()
            os.fsync(f.fileno())
        os.replace(self._tmp_rec, self.rec_path)
        os.replace(self._tmp_idx, self.idx_path)

    def abort(self) -> None:
        self._rec.close()
        self._tmp_rec.unlink(missing_ok=True)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, *_: Any) -> None:
        self.abort() if exc_type is not None else self.close()


def scan_offsets(path: Path) -> dict[int, int]:
    """key -> offset for every record of a .rec, read from the file itself (keys 0, 1, ... in order)."""
    out: dict[int, int] = {}
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos, key, first = 0, 0, True
        while pos + 8 <= size:
            f.seek(pos)
            magic, lrec = _HEAD.unpack(f.read(8))
            if magic != MAGIC:
                break  # the rest cannot be framed; what came before is kept
            cflag = lrec >> 29
            if first:
                out[key] = pos
            pos += 8 + _pad4(lrec & _LEN_MASK)
            first = cflag in (0, 3)
            if first:
                key += 1
    return out


class RecordFaces(ReplacingFaces):
    """Face images of an insightface/MXNet `.rec` (with its `.idx`) as `(image, label)`.

    Args as `ImageFolderFaces`: resolution, preprocess ("none" | "casia" | "ffhq"), output ("tensor":
    float32 [3, R, R] in [0, 1], or "pil"), transform, target_transform, min_size (smaller images are
    skipped when read). Attributes: `path`,
    `keys` (record keys of the images), `targets` (int labels), `classes` (sorted distinct labels),
    `skipped` [(file#key, reason)], `notes` (what was repaired, e.g. a rebuilt index).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        resolution: int,
        preprocess: Literal["none", "casia", "ffhq"] = "none",
        output: Literal["tensor", "pil"] = "tensor",
        transform: Optional[Callable[[Any], Any]] = None,
        target_transform: Optional[Callable[[int], Any]] = None,
        min_size: int = 1,
    ):
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size must be a positive int, got {min_size!r}")
        self.min_size = min_size
        for name, value, choices in (("preprocess", preprocess, PREPROCESS_CHOICES), ("output", output, OUTPUT_CHOICES)):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not valid; choices: {', '.join(map(repr, choices))}")
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"RecordIO file not found: {self.path}")
        self.resolution, self.preprocess, self.output = resolution, preprocess, output
        self.transform, self.target_transform = transform, target_transform
        self.skipped: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self._file: Optional[BinaryIO] = None
        self._pid: Optional[int] = None
        self._failed: set[int] = set()

        offsets = self._read_index()
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            header = self._header0(f, offsets)
            candidates = list(range(1, int(header[0]))) if header else sorted(offsets)
            keys, targets, offs = [], [], []
            for key in candidates:
                where = f"{self.path}#{key}"
                off = offsets.get(key)
                if off is None:
                    self.skipped.append((where, "not in the index"))
                    continue
                if not 0 <= off <= size - 8:
                    self.skipped.append((where, f"index offset {off} is outside the file ({size} bytes)"))
                    continue
                try:  # the header only: magic, length, IRHeader (the image is decoded when it is read)
                    f.seek(off)
                    magic, lrec = _HEAD.unpack(f.read(8))
                    if magic != MAGIC:
                        raise RecordError(f"bad magic number 0x{magic:08x} (expected 0x{MAGIC:08x})")
                    (flag, label, _, _), _ = unpack_header(f.read(min(lrec & _LEN_MASK, 24 + 4 * 64)), where)
                except (RecordError, struct.error) as e:
                    self.skipped.append((where, str(e).removeprefix(f"{where}: ")))
                    continue
                keys.append(key)
                targets.append(int(label[0] if flag > 0 else label))
                offs.append(off)
        if not keys:
            first = f"; first: {self.skipped[0][0]} ({self.skipped[0][1]})" if self.skipped else ""
            raise ValueError(f"no readable records in {self.path} ({len(candidates)} looked at{first})")
        self.keys, self.targets, self._offsets = keys, targets, offs
        self.classes = sorted(set(targets))
        if self.skipped:
            warnings.warn(f"RecordFaces: {len(self.skipped)} of {len(candidates)} records of {self.path} skipped; "
                          f"first: {self.skipped[0][0]} ({self.skipped[0][1]}); see .skipped", RuntimeWarning)

    def _read_index(self) -> dict[int, int]:
        idx = self.path.with_suffix(".idx")
        if not idx.is_file():
            self.notes.append(f"{idx} missing: index rebuilt by scanning {self.path}")
            warnings.warn(f"RecordFaces: {idx} not found; rebuilding the index by scanning {self.path}", RuntimeWarning)
            return scan_offsets(self.path)
        out: dict[int, int] = {}
        for n, line in enumerate(idx.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                out[int(parts[0])] = int(parts[1])
            except (ValueError, IndexError):
                self.skipped.append((f"{idx}:{n}", f"bad index line {line[:60]!r}"))
        return out

    def _header0(self, f: BinaryIO, offsets: dict[int, int]) -> Optional[tuple[float, ...]]:
        """insightface's record 0: (1 + number of images, end of identity records) when its flag is set."""
        if 0 not in offsets:
            return None
        try:
            (flag, label, _, _), _ = unpack_header(read_record(f, offsets[0], f"{self.path}#0"), f"{self.path}#0")
        except RecordError as e:
            self.notes.append(f"record 0 unreadable ({e}); every indexed key is taken as an image")
            return None
        return tuple(label) if flag > 0 else None

    def _handle(self) -> BinaryIO:
        if self._file is None or self._pid != os.getpid():  # one handle per process (DataLoader workers)
            self._file = open(self.path, "rb")
            self._pid = os.getpid()
        return self._file

    def load_rgb(self, index: int) -> Image.Image:
        """Decode image `index` to RGB at its stored geometry; RecordError naming the file and key if broken."""
        where = f"{self.path}#{self.keys[index]}"
        _, data = unpack_header(read_record(self._handle(), self._offsets[index], where), where)
        fmt = sniff_format(data[:16])
        if fmt is None:
            raise RecordError(f"{where}: payload is not an image (starts {data[:8]!r})")
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                im.load()
                im = to_rgb(ImageOps.exif_transpose(im)).copy()
        except Exception as e:  # PIL raises several types for corrupt data
            raise RecordError(f"{where}: {fmt} payload does not decode ({e})") from None
        if min(im.size) < self.min_size:
            raise RecordError(f"{where}: too small ({im.size[0]}x{im.size[1]}; min_size is {self.min_size} px)")
        return im

    def __len__(self) -> int:
        return len(self.keys)

    def _record_failure(self, j: int, e: BaseException) -> None:
        self._failed.add(j)
        self.skipped.append((f"{self.path}#{self.keys[j]}", str(e).split(": ", 1)[-1]))
        warnings.warn(f"RecordFaces: skipping {e}; using the next record instead", RuntimeWarning)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None  # never pickle an open handle
        return state

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def __repr__(self) -> str:
        return (f"RecordFaces(path='{self.path}', images={len(self)}, classes={len(self.classes)}, resolution={self.resolution}, "
                f"preprocess='{self.preprocess}', output='{self.output}', skipped={len(self.skipped)}, transform={self.transform!r})")
