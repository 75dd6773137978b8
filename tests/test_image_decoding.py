"""Odd image files decode to the right pixels, identically for training and the gallery."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sei_core import dataset, decode, images
from sei_core.gallery import ImageAccessError, ImageSource

S = 16  # training size for the decode checks


def _png16_rgb(path, a: np.ndarray) -> None:
    """Write a 48-bit RGB PNG (PIL cannot): ``a`` is (H, W, 3) uint16."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def odd_images(tmp_path):
    """A label file over one image of each awkward kind, with the pixels each should give."""
    rng = np.random.default_rng(0)
    expect = {}
    grad16 = np.tile(np.linspace(0, 60000, S, dtype=np.uint16), (S, 1))  # up to 92 % of 16-bit range
    Image.fromarray(grad16).save(tmp_path / "grey16.png")
    expect["grey16.png"] = np.round(grad16 / 65535 * 255)
    rgb16 = rng.integers(0, 65536, (S, S, 3), dtype=np.uint16)
    _png16_rgb(tmp_path / "rgb16.png", rgb16)
    expect["rgb16.png"] = rgb16 / 257.0
    f01 = np.tile(np.linspace(0, 1, S, dtype=np.float32), (S, 1)).T.copy()
    Image.fromarray(f01).save(tmp_path / "float01.tif")
    expect["float01.tif"] = np.round(f01 * 255)
    # EXIF orientation 6: stored 2S wide × S tall, displayed rotated 90° clockwise (S wide × 2S tall)
    stored = np.zeros((S, 2 * S, 3), dtype=np.uint8)
    stored[:, :S] = (255, 0, 0)  # left half red → top half once upright
    stored[:, S:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", quality=98, exif=exif.tobytes())
    upright = np.zeros((2 * S, S, 3))
    upright[:S] = (255, 0, 0)
    upright[S:] = (0, 0, 255)
    expect["rotated.jpg"] = upright
    rows = ["path,label"] + [f"{name},{'a' if i % 2 else 'b'}" for i, name in enumerate(expect)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path, expect


def test_each_kind_decodes_to_its_pixels(odd_images):
    root, expect = odd_images
    src = ImageSource(root / "labels.csv")
    for name, want in expect.items():
        got = np.asarray(images.read_rgb(root / name), dtype=np.float64)
        shown = np.asarray(src.open(name), dtype=np.float64)
        assert np.array_equal(got, shown), f"{name}: the gallery shows other pixels than training decodes"
        if want.ndim == 2:
            assert np.allclose(got, want[..., None], atol=1), name  # grey → R = G = B
        else:
            atol = 8 if name.endswith(".jpg") else 1  # JPEG compression error at colour edges
            assert got.shape == want.shape, (name, got.shape)
            assert np.abs(got - want).mean() < atol, name
    grey = np.asarray(images.read_rgb(root / "grey16.png"))
    assert grey.min() == 0 and 200 < grey.max() < 255  # not saturated to white


def test_training_decode_uses_the_same_pixels(odd_images):
    root, expect = odd_images
    ds = dataset.load(root / "labels.csv")
    arr, problems = decode.decode_images(ds, S, workers=1)
    assert not problems
    for i, sid in enumerate(ds.ids):
        want = np.asarray(images.read_rgb(root / sid).resize((S, S), Image.BILINEAR)).transpose(2, 0, 1)
        assert np.array_equal(arr[i], want), sid
    rot = arr[ds.ids.index("rotated.jpg")].astype(int)
    assert rot[0, : S // 2].mean() > 200 and rot[2, : S // 2].mean() < 50  # top half red: upright
    assert rot[2, S // 2 + 1:].mean() > 200  # bottom half blue


@pytest.mark.parametrize("values, why", [
    (np.full((S, S), 1000.0, dtype=np.float32), "outside"),
    (np.full((S, S), -0.5, dtype=np.float32), "outside"),
    (np.full((S, S), np.nan, dtype=np.float32), "NaN"),
])
def test_float_images_without_a_fixed_mapping_are_refused_with_a_reason(tmp_path, values, why):
    Image.fromarray(values).save(tmp_path / "bad.tif")
    Image.fromarray(np.zeros((S, S, 3), np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.zeros((S, S, 3), np.uint8)).save(tmp_path / "ok2.png")
    (tmp_path / "labels.csv").write_text("path,label\nbad.tif,a\nok.png,b\nok2.png,a\n")
    with pytest.raises(ValueError, match=why):
        images.read_rgb(tmp_path / "bad.tif")
    ds = dataset.load(tmp_path / "labels.csv")
    with pytest.raises(dataset.DataError, match=f"bad.tif.*{why}"):
        decode.decode_images(ds, S, workers=1)
    with pytest.raises(ImageAccessError, match=why):
        ImageSource(tmp_path / "labels.csv").open("bad.tif")
