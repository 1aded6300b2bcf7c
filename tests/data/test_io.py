"""vps_d2.data.io: frame/mask reading, quirks of real files, errors naming the file."""

import cv2
import numpy as np
import pytest

from vps_d2.data.io import ImageReadError, is_image_file, mask_to_box, read_image, read_mask


def _bgr(h=16, w=20, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_image_channel_order(tmp_path):
    img = _bgr()
    p = str(tmp_path / "a.png")
    cv2.imwrite(p, img)
    rgb = read_image(p)
    assert rgb.shape == (16, 20, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, img[:, :, ::-1])
    np.testing.assert_array_equal(read_image(p, format="BGR"), img)
    with pytest.raises(ValueError, match="format"):
        read_image(p, format="HSV")


def test_read_image_gray_rgba_16bit(tmp_path):
    gray = _bgr()[:, :, 0]
    p = str(tmp_path / "gray.png")
    cv2.imwrite(p, gray)
    out = read_image(p)
    assert out.shape == (16, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)

    bgra = np.dstack([_bgr(seed=1), np.full((16, 20), 7, np.uint8)])
    p = str(tmp_path / "rgba.png")
    cv2.imwrite(p, bgra)
    np.testing.assert_array_equal(read_image(p), bgra[:, :, 2::-1])

    img16 = (_bgr(seed=2).astype(np.uint16)) * 257
    p = str(tmp_path / "deep.png")
    cv2.imwrite(p, img16)
    np.testing.assert_array_equal(read_image(p, "BGR"), _bgr(seed=2))


def test_read_image_uppercase_jpg(tmp_path):
    p = str(tmp_path / "F.JPG")
    ok, buf = cv2.imencode(".jpg", _bgr())
    (tmp_path / "F.JPG").write_bytes(buf.tobytes())
    assert ok and read_image(p).shape == (16, 20, 3)


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "trunc_jpg", "trunc_png"])
def test_read_errors_name_the_file(tmp_path, kind):
    img = np.random.RandomState(3).randint(0, 256, (64, 64, 3), dtype=np.uint8)
    p = tmp_path / f"bad_{kind}.{'jpg' if 'jpg' in kind else 'png'}"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(b"this is not an image" * 10)
    elif kind.startswith("trunc"):
        ok, buf = cv2.imencode(p.suffix, img)
        data = buf.tobytes()
        p.write_bytes(data[: len(data) // 2])
    err = FileNotFoundError if kind == "missing" else ImageReadError
    for reader in (read_image, read_mask):
        with pytest.raises(err, match=str(p.name)):
            reader(str(p))


def test_read_mask_conventions(tmp_path):
    ref = np.zeros((16, 20), bool)
    ref[3:8, 5:12] = True
    # 0/255
    cv2.imwrite(str(tmp_path / "m255.png"), ref.astype(np.uint8) * 255)
    # 0/1
    cv2.imwrite(str(tmp_path / "m01.png"), ref.astype(np.uint8))
    # anti-aliased: inside 200, a ring of 100 (background) and 129 (foreground)
    aa = ref.astype(np.uint8) * 200
    aa[2, 5:12] = 100
    aa[8, 5:12] = 129
    cv2.imwrite(str(tmp_path / "maa.png"), aa)
    # colour mask (white polyp on black), saved as BGR
    cv2.imwrite(str(tmp_path / "mrgb.png"), np.dstack([ref.astype(np.uint8) * 255] * 3))
    for name in ("m255", "m01", "mrgb"):
        m = read_mask(str(tmp_path / f"{name}.png"))
        assert m.dtype == bool and m.shape == (16, 20)
        np.testing.assert_array_equal(m, ref)
    expected = ref.copy()
    expected[8, 5:12] = True
    np.testing.assert_array_equal(read_mask(str(tmp_path / "maa.png")), expected)
    # values {0, 1, 255}: max is 255, so 1 is background (only a mask whose max is 1 is 0/1)
    mixed = ref.astype(np.uint8) * 255
    mixed[0, 0] = 1
    cv2.imwrite(str(tmp_path / "mix.png"), mixed)
    np.testing.assert_array_equal(read_mask(str(tmp_path / "mix.png")), ref)
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((4, 4), np.uint8))
    assert not read_mask(str(tmp_path / "empty.png")).any()


def test_mask_to_box():
    m = np.zeros((16, 20), bool)
    assert mask_to_box(m) is None
    m[3:8, 5:12] = True  # rows 3..7, cols 5..11
    m[10, 2] = True
    assert mask_to_box(m) == [2.0, 3.0, 10.0, 8.0]
    single = np.zeros((5, 5), bool)
    single[4, 1] = True
    assert mask_to_box(single) == [1.0, 4.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        mask_to_box(np.zeros((2, 2, 2), bool))


def test_is_image_file():
    assert is_image_file("a.JPG") and is_image_file("dir/b.png") and is_image_file("c.TIFF")
    assert not is_image_file(".DS_Store")
    assert not is_image_file("._a.jpg")
    assert not is_image_file("notes.txt")
