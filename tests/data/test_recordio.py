"""RecordIO (insightface / MXNet .rec + .idx) read and write without MXNet, against the public format."""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from facedis_aug.data.folder import prepare_face
from facedis_aug.data.recordio import (MAGIC, RecordFaces, RecordWriter, pack_payload, read_record,
                                       unpack_header)


def _jpeg(seed: int, size=(24, 20)) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize(size, Image.BILINEAR).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_face_set(path, labels, header=True, payloads=None):
    """insightface layout: record 0 = header (flag 2: 1 + images, end of identity records), images 1..n,
    then one identity record per class with its [start, end) image keys."""
    n = len(labels)
    ids = sorted(set(labels))
    with RecordWriter(path) as w:
        if header:
            w.write(0, pack_payload([n + 1, n + 1 + len(ids)], b""))
        for k, lab in enumerate(labels, 1):
            w.write(k, payloads[k - 1] if payloads else pack_payload(float(lab), _jpeg(k)))
        if header:
            for j, c in enumerate(ids):
                keys = [k for k, lab in enumerate(labels, 1) if lab == c]
                w.write(n + 1 + j, pack_payload([min(keys), max(keys) + 1], b""))
    return path


def test_a_record_is_framed_as_the_public_description_says(tmp_path):
    with RecordWriter(tmp_path / "one.rec") as w:
        w.write(7, b"abcde")
    raw = (tmp_path / "one.rec").read_bytes()
    # magic 0xced7230a little-endian, lrecord = flag 0 << 29 | length 5, payload, 3 zero bytes of padding
    assert raw == b"\x0a\x23\xd7\xce" + struct.pack("<I", 5) + b"abcde" + b"\0\0\0"
    assert (tmp_path / "one.idx").read_text() == "7\t0\n"
    # IRHeader: flag, label, id, id2 as "<IfQQ"; a label array follows when flag > 0
    p = pack_payload(3.0, b"img", id1=9)
    assert p[:24] == struct.pack("<IfQQ", 0, 3.0, 9, 0) and p[24:] == b"img"
    q = pack_payload([4.0, 2.0], b"x")
    assert q[:24] == struct.pack("<IfQQ", 2, 0.0, 0, 0) and q[24:32] == struct.pack("<2f", 4.0, 2.0)
    assert unpack_header(q) == ((2, (4.0, 2.0), 0, 0), b"x")


def test_a_payload_holding_the_magic_is_split_and_joined_back(tmp_path):
    magic = MAGIC.to_bytes(4, "little")
    payload = b"head" + magic + b"mid!" + magic + b"tail-odd"
    with RecordWriter(tmp_path / "m.rec") as w:
        w.write(0, payload)
        w.write(1, b"next")
    raw = (tmp_path / "m.rec").read_bytes()
    flags = [struct.unpack_from("<I", raw, i + 4)[0] >> 29 for i in range(0, len(raw) - 4, 4) if raw[i:i + 4] == magic]
    assert flags == [1, 2, 3, 0]  # first, middle, last part; then a whole record
    with open(tmp_path / "m.rec", "rb") as f:
        assert read_record(f, 0) == payload
        off = int((tmp_path / "m.idx").read_text().splitlines()[1].split("\t")[1])
        assert read_record(f, off) == b"next"


def test_face_set_round_trip_with_the_header_record(tmp_path):
    labels = [0, 0, 1, 2, 2, 2]
    rec = write_face_set(tmp_path / "train.rec", labels)
    ds = RecordFaces(rec, resolution=16)
    assert len(ds) == 6 and ds.targets == labels and ds.classes == [0, 1, 2] and ds.keys == [1, 2, 3, 4, 5, 6]
    x, y = ds[3]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 2 and 0 <= x.min() and x.max() <= 1
    want = prepare_face(Image.open(io.BytesIO(_jpeg(4))).convert("RGB"), "none", 16)  # centre square, LANCZOS
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy() * 255, np.asarray(want, dtype=np.float64), atol=1)
    assert not ds.skipped and "images=6, classes=3" in repr(ds)
    # without the header record every indexed key is an image
    plain = RecordFaces(write_face_set(tmp_path / "plain.rec", [3, 4], header=False), resolution=8, output="pil")
    assert plain.keys == [1, 2] and plain.targets == [3, 4] and plain[1][0].size == (8, 8)


def test_broken_input_is_named_and_skipped_never_a_crash(tmp_path):
    labels = [0, 1, 2, 3]
    payloads = [pack_payload(0.0, _jpeg(1)), pack_payload(1.0, b"this is not an image at all"),
                pack_payload(2.0, _jpeg(3)), pack_payload(3.0, _jpeg(4)[:40])]  # a truncated JPEG
    rec = write_face_set(tmp_path / "t.rec", labels, payloads=payloads)
    idx = tmp_path / "t.idx"
    lines = idx.read_text().splitlines()
    lines[3] = "3\t999999"  # past the end of the file
    idx.write_text("\n".join(lines) + "\n")
    with pytest.warns(RuntimeWarning, match="1 of 4 records"):
        ds = RecordFaces(rec, resolution=8)
    assert ds.skipped == [(f"{rec}#3", "index offset 999999 is outside the file (%d bytes)" % rec.stat().st_size)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [ds[i][1] for i in range(len(ds))]
    # keys 1, 2, 4 are left (3 was refused up front); 2 and 4 fail when read and are replaced by the next
    # readable record, which is key 1 (label 0) both times
    assert ds.keys == [1, 2, 4] and got == [0, 0, 0]
    assert {k for k, _ in ds.skipped} == {f"{rec}#2", f"{rec}#3", f"{rec}#4"}
    reasons = dict(ds.skipped)
    assert "not an image" in reasons[f"{rec}#2"] and "does not decode" in reasons[f"{rec}#4"]
    assert any("skipping" in str(w.message) for w in caught)
    # a bad magic number where the index points
    data = bytearray(rec.read_bytes())
    off = int(lines[1].split("\t")[1])
    data[off:off + 4] = b"\0\0\0\0"
    bad = tmp_path / "bad.rec"
    bad.write_bytes(bytes(data))
    (tmp_path / "bad.idx").write_text(idx.read_text())
    with pytest.warns(RuntimeWarning):
        ds2 = RecordFaces(bad, resolution=8)
    assert any(k == f"{bad}#1" and "bad magic number" in r for k, r in ds2.skipped)


def test_a_missing_index_is_rebuilt_and_said(tmp_path):
    rec = write_face_set(tmp_path / "train.rec", [0, 1, 1])
    (tmp_path / "train.idx").unlink()
    with pytest.warns(RuntimeWarning, match="rebuilding the index"):
        ds = RecordFaces(rec, resolution=8)
    assert ds.targets == [0, 1, 1] and ds.notes and "rebuilt" in ds.notes[0]
    with pytest.raises(FileNotFoundError, match="nowhere.rec"):
        RecordFaces(tmp_path / "nowhere.rec", resolution=8)


def test_dataloader_workers_read_the_same_items(tmp_path):
    rec = write_face_set(tmp_path / "train.rec", [0, 1, 2, 3, 4, 5])
    ds = RecordFaces(rec, resolution=8)
    ds[0]  # the parent opens its handle first: workers must open their own
    a = torch.cat([x for x, _ in DataLoader(ds, batch_size=3, num_workers=2)])
    b = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(a, b)


def test_a_resumed_writer_cuts_back_to_the_logged_end_and_keeps_the_old_offsets(tmp_path):
    path = tmp_path / "r.rec"
    w = RecordWriter(path)
    spans = [w.write(k, f"payload-{k}".encode()) for k in (1, 2)]
    w.flush()
    w._rec.write(b"torn half record")  # a crash in the middle of record 3
    w._rec.close()
    # the caller logged records 1 and 2 as written: resume at the end of record 2
    w = RecordWriter(path, resume_at=spans[1][1], offsets={1: spans[0][0], 2: spans[1][0]})
    w.write(3, b"payload-3")
    w.close()
    with RecordWriter(tmp_path / "ref.rec") as ref:
        for k in (1, 2, 3):
            ref.write(k, f"payload-{k}".encode())
    assert path.read_bytes() == (tmp_path / "ref.rec").read_bytes()
    assert (tmp_path / "r.idx").read_text() == (tmp_path / "ref.idx").read_text()
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="missing"):
        RecordWriter(tmp_path / "gone.rec", resume_at=10)
