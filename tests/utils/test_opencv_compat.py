"""The OpenCV calls vps_d2 relies on: shapes and values against NumPy, on OpenCV 4.x and 5.x.

One test per shape- or value-sensitive call (see :mod:`vps_d2.utils.opencv_compat` for the
calls that differ between 4.x and 5.x and the helpers that hide it). CI runs this file on
OpenCV 5.x (README.md's test command) and on 4.8 (the lowest-versions leg).
"""

import colorsys
import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vps_d2.evaluation import metrics as M
from vps_d2.io import VideoReader, VideoWriter
from vps_d2.utils import opencv_compat as C


def _rng(seed=0):
    return np.random.default_rng(seed)


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


# ------------------------------------------------------------------ helpers that differ
def test_find_nonzero_is_n_by_2_in_row_major_order():
    mask = (_rng().random((23, 31)) < 0.2).astype(np.uint8)
    pts = C.find_nonzero(mask)
    assert pts.shape == (int(mask.sum()), 2) and pts.dtype == np.int32
    np.testing.assert_array_equal(pts, np.argwhere(mask)[:, ::-1])  # (x, y), y-major
    one = np.zeros((4, 6), np.uint8)
    one[2, 5] = 7
    np.testing.assert_array_equal(C.find_nonzero(one), [[5, 2]])
    empty = C.find_nonzero(np.zeros((4, 6), np.uint8))
    assert empty.shape == (0, 2)
    with pytest.raises(ValueError, match="H, W"):
        C.find_nonzero(np.zeros((2, 2, 3), np.uint8))


def test_histogram_u8_is_256_counts():
    img = _rng(1).integers(0, 256, (37, 53)).astype(np.uint8)
    mask = (_rng(2).random((37, 53)) < 0.5).astype(np.uint8) * 255
    h = C.histogram_u8(img, mask)
    assert h.shape == (256,)
    np.testing.assert_array_equal(h, np.bincount(img[mask > 0], minlength=256))
    np.testing.assert_array_equal(C.histogram_u8(img), np.bincount(img.ravel(), minlength=256))


def test_joint_histogram_of_the_metrics_is_256_by_2():
    """metrics._block_hist's two-channel calcHist: (256, 2) counts of (level, GT)."""
    pred = _rng(3).integers(0, 256, (29, 41)).astype(np.uint8)
    gt8 = (_rng(4).random((29, 41)) < 0.3).astype(np.uint8)
    h = cv2.calcHist([pred, gt8], [0, 1], None, [256, 2], [0, 256, 0, 2])
    assert h.shape == (256, 2)
    ref = np.bincount(pred.ravel().astype(np.int64) * 2 + gt8.ravel(), minlength=512)
    np.testing.assert_array_equal(h, ref.reshape(256, 2))


def _bilinear_reference(src, sx32, sy32, border):
    """NumPy bilinear sampling at source coordinates given in 1/32 pixel (int arrays).

    uint8: OpenCV's fixed-point rule, weights (32 - a)(32 - b) ... scaled to 2^15 and the
    sum rounded half up; float: float64 weights. ``border``: "constant" (0) or "reflect"
    (reflect-101 indices).
    """
    h, w = src.shape[:2]
    x0, y0 = sx32 >> 5, sy32 >> 5
    ax, ay = sx32 & 31, sy32 & 31
    acc = 0
    for dy, wy in ((0, 32 - ay), (1, ay)):
        for dx, wx in ((0, 32 - ax), (1, ax)):
            xi, yi = x0 + dx, y0 + dy
            if border == "reflect":
                xi = np.abs(xi) % (2 * w - 2)
                xi = np.where(xi >= w, 2 * w - 2 - xi, xi)
                yi = np.abs(yi) % (2 * h - 2)
                yi = np.where(yi >= h, 2 * h - 2 - yi, yi)
                v = src[yi, xi].astype(np.int64 if src.dtype == np.uint8 else np.float64)
            else:
                ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                v = src[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
                v = v.astype(np.int64 if src.dtype == np.uint8 else np.float64)
                v = np.where(ok[..., None] if v.ndim == 3 else ok, v, 0)
            wgt = wx * wy
            acc = acc + (wgt[..., None] if v.ndim == 3 else wgt) * v
    if src.dtype == np.uint8:
        return ((acc * 32 + (1 << 14)) >> 15).astype(np.uint8)  # weights / 1024 * 2^15
    return acc / 1024.0


# Dyadic matrices: every product is exact, so OpenCV 4.x's two-step fixed-point rounding
# is floor(32 * s + 1/2) of the exact source coordinate s.
_DYADIC_INV = np.array([[1.25, -0.375, 3.5], [0.3125, 1.0625, -2.25]])
_FORWARD = np.array([[2.0, 0.0, 4.0], [0.0, 0.5, -1.5]])  # inverse [[.5, 0, -2], [0, 2, 3]]


@pytest.mark.parametrize("border", ["constant", "reflect"])
@pytest.mark.parametrize("kind", ["u8", "u8c", "f32c"])
def test_warp_affine_bilinear_on_the_32_grid(border, kind):
    rng = _rng(5)
    src = rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)
    src = {"u8": src[..., 0].copy(), "u8c": src, "f32c": src.astype(np.float32) + 0.25}[kind]
    mode = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}[border]
    for matrix, inverse in ((_DYADIC_INV, True), (_FORWARD, False)):
        inv = matrix if inverse else np.array([[0.5, 0, -2], [0, 2, 3]])
        out = C.warp_affine(src, matrix, (60, 45), inverse_map=inverse, border_mode=mode)
        assert out.shape == (45, 60) + src.shape[2:] and out.dtype == src.dtype
        yy, xx = np.mgrid[0:45, 0:60]
        sx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
        sy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
        sx32 = np.floor(sx * 32 + 0.5).astype(np.int64)
        sy32 = np.floor(sy * 32 + 0.5).astype(np.int64)
        ref = _bilinear_reference(src, sx32, sy32, border)
        if kind == "f32c":
            np.testing.assert_allclose(out, ref, atol=2e-4)
        else:
            np.testing.assert_array_equal(out, ref)


def test_warp_affine_nearest_rounds_half_up():
    src = _rng(6).integers(0, 256, (37, 53)).astype(np.uint8)
    out = C.warp_affine(src, _DYADIC_INV, (60, 45), interpolation="nearest", inverse_map=True)
    yy, xx = np.mgrid[0:45, 0:60]
    m = _DYADIC_INV
    sx = np.floor(m[0, 0] * xx + m[0, 1] * yy + m[0, 2] + 0.5).astype(np.int64)
    sy = np.floor(m[1, 0] * xx + m[1, 1] * yy + m[1, 2] + 0.5).astype(np.int64)
    ok = (sx >= 0) & (sx < 53) & (sy >= 0) & (sy < 37)
    ref = np.where(ok, src[np.clip(sy, 0, 36), np.clip(sx, 0, 52)], 0)
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(ValueError, match="interpolation"):
        C.warp_affine(src, _DYADIC_INV, (60, 45), interpolation="cubic")
    with pytest.raises(ValueError, match="2x3"):
        C.warp_affine(src, np.eye(3), (60, 45))


@pytest.mark.skipif(C.OPENCV_VERSION >= (5, 0), reason="compares with OpenCV 4.x's own warpAffine")
def test_warp_affine_equals_opencv4_warpaffine():
    """On OpenCV 4.x the helper is cv2.warpAffine bit for bit (any matrix, both borders)."""
    rng = _rng(7)
    srcs = [
        rng.integers(0, 256, (61, 83, 3)).astype(np.uint8),
        rng.integers(0, 256, (61, 83)).astype(np.uint8),
        (rng.random((61, 83, 4)) * 255).astype(np.float32),
    ]
    for trial in range(12):
        a, s = np.deg2rad(rng.uniform(-40, 40)), rng.uniform(0.6, 1.8)
        m = np.array(
            [
                [s * np.cos(a), s * np.sin(a), rng.uniform(-9, 9)],
                [-s * np.sin(a), s * np.cos(a), rng.uniform(-9, 9)],
            ]
        )
        m = m.astype(np.float32) if trial % 2 else m
        size = (int(rng.integers(30, 140)), int(rng.integers(30, 140)))
        for inverse in (False, True):
            for interp, flag in (("linear", cv2.INTER_LINEAR), ("nearest", cv2.INTER_NEAREST)):
                flags = flag | (cv2.WARP_INVERSE_MAP if inverse else 0)
                for mode in (cv2.BORDER_CONSTANT, cv2.BORDER_REFLECT_101):
                    for src in srcs:
                        ours = C.warp_affine(
                            src,
                            m,
                            size,
                            interpolation=interp,
                            inverse_map=inverse,
                            border_mode=mode,
                        )
                        theirs = cv2.warpAffine(
                            src, m, size, flags=flags, borderMode=mode, borderValue=0
                        )
                        np.testing.assert_array_equal(ours, theirs)


def test_resize_nearest_exact_picks_the_nearest_centre():
    """Sizes without ties: the source pixel of output i is floor((i + 1/2) * n_in / n_out)."""
    x = _rng(18).integers(0, 256, (21, 35, 3)).astype(np.uint8)
    for out_h, out_w in ((9, 15), (6, 10), (63, 105)):  # 21/9, 35/15, ...: no exact ties
        out = C.resize_nearest_exact(x, (out_w, out_h))
        assert out.shape == (out_h, out_w, 3) and out.dtype == np.uint8
        rows = ((2 * np.arange(out_h) + 1) * 21) // (2 * out_h)
        cols = ((2 * np.arange(out_w) + 1) * 35) // (2 * out_w)
        assert not np.any(((2 * np.arange(out_h) + 1) * 21) % (2 * out_h) == 0)  # no tie
        np.testing.assert_array_equal(out, x[rows][:, cols])
    mask = (_rng(19).random((96, 128)) < 0.5).astype(np.uint8)
    assert C.resize_nearest_exact(mask, (80, 64)).shape == (64, 80)
    with pytest.raises(ValueError, match="dsize"):
        C.resize_nearest_exact(mask, (0, 64))


@pytest.mark.skipif(C.OPENCV_VERSION >= (5, 0), reason="compares with OpenCV 4.x's own resize")
def test_resize_nearest_exact_equals_opencv4():
    rng = _rng(20)
    for _ in range(300):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 400, 4))
        x = rng.integers(0, 256, (h, w)).astype(np.uint8)
        ref = cv2.resize(x, (ow, oh), interpolation=cv2.INTER_NEAREST_EXACT)
        np.testing.assert_array_equal(C.resize_nearest_exact(x, (ow, oh)), ref)


class _FakeCapture:
    def __init__(self, value):
        self.value = value

    def get(self, prop):
        return self.value


def test_capture_property_unknown_is_none():
    assert C.capture_property(_FakeCapture(0.0), cv2.CAP_PROP_FPS) is None  # OpenCV 4.x
    assert C.capture_property(_FakeCapture(-1.0), cv2.CAP_PROP_FPS) is None  # OpenCV 5.x
    assert C.capture_property(_FakeCapture(float("nan")), cv2.CAP_PROP_FPS) is None
    assert C.capture_property(_FakeCapture(25.0), cv2.CAP_PROP_FPS) == 25.0
    cap = cv2.VideoCapture(os.path.join(os.path.dirname(__file__), "no_such_video.mp4"))
    assert not cap.isOpened()
    assert C.capture_property(cap, cv2.CAP_PROP_FRAME_COUNT) is None


# ------------------------------------------------------------- calls of the evaluation
def test_reduce_sums_rows_and_columns():
    gt8 = (_rng(8).random((19, 27)) < 0.4).astype(np.uint8)
    rows = cv2.reduce(gt8, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)
    cols = cv2.reduce(gt8, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)
    assert rows.size == 19 and cols.size == 27
    np.testing.assert_array_equal(rows.ravel(), gt8.sum(axis=1))
    np.testing.assert_array_equal(cols.ravel(), gt8.sum(axis=0))


def test_min_max_loc_compare_count_nonzero():
    pred = _rng(9).integers(3, 250, (17, 23)).astype(np.uint8)
    pred[4, 7], pred[11, 2] = 1, 254
    vmin, vmax, loc_min, loc_max = cv2.minMaxLoc(pred)
    assert (vmin, vmax, loc_min, loc_max) == (1.0, 254.0, (7, 4), (2, 11))
    nz = cv2.compare(pred, int(pred[0, 0]), cv2.CMP_NE)  # a Python int, as metrics.py
    assert nz.shape == pred.shape and nz.dtype == np.uint8
    np.testing.assert_array_equal(nz, (pred != pred[0, 0]) * 255)
    assert cv2.countNonZero(nz) == int((pred != pred[0, 0]).sum())


def test_lut_keeps_shape_and_table_dtype():
    img = _rng(10).integers(0, 256, (21, 33)).astype(np.uint8)
    lut64 = np.linspace(0, 1, 256)
    for view in (img, img[2:19, 3:30]):
        out = cv2.LUT(view, lut64)
        assert out.shape == view.shape and out.dtype == np.float64
        np.testing.assert_array_equal(out, lut64[view])
    rgb = _rng(11).integers(0, 256, (21, 33, 3)).astype(np.uint8)
    lut32 = np.clip(np.arange(256) * 1.3, 0, 255).astype(np.float32)
    out = cv2.LUT(rgb, lut32)
    assert out.shape == rgb.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, lut32[rgb])


def test_dilate_copy_make_border_bounding_rect():
    gt8 = _disc(40, 50, 20, 22, 9).astype(np.uint8)
    dil = cv2.dilate(gt8, np.ones((7, 7), np.uint8))
    np.testing.assert_array_equal(dil > 0, ndimage.binary_dilation(gt8, np.ones((7, 7))))
    pad = cv2.copyMakeBorder(gt8, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=0)
    assert pad.shape == (48, 58)
    np.testing.assert_array_equal(pad, np.pad(gt8, 4))
    ys, xs = np.nonzero(gt8)
    assert cv2.boundingRect(gt8) == (xs.min(), ys.min(), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    assert cv2.boundingRect(np.zeros((5, 6), np.uint8)) == (0, 0, 0, 0)  # "bw == 0" test


def test_distance_transform_gives_exact_squared_distances():
    """metrics: float32 cv2.distanceTransform -> integer squared distance -> SciPy's EDT."""
    bg = ~(_disc(120, 150, 60, 70, 20) | _disc(120, 150, 10, 140, 3))
    d = cv2.distanceTransform(bg.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    assert d.shape == bg.shape and d.dtype == np.float32
    ref = ndimage.distance_transform_edt(bg)
    np.testing.assert_array_equal(M._squared_distances(d), np.rint(ref * ref).astype(np.int64))
    np.testing.assert_array_equal(M._finish_distances(d, False), ref)


def test_metric_filters_against_numpy():
    """The weighted F-measure's 7x7 Gaussian and weights B, against direct NumPy sums."""
    et = _rng(12).random((23, 29)) * (_rng(13).random((23, 29)) < 0.7)
    x = np.arange(7) - 3.0
    g = np.exp(-(x * x) / 50)
    k2 = np.outer(g, g) / np.outer(g, g).sum()
    pad = np.pad(et, 3)
    ref = sum(k2[i, j] * pad[i : i + 23, j : j + 29] for i in range(7) for j in range(7))
    np.testing.assert_allclose(M._gaussian_7x7(et), ref, rtol=0, atol=1e-15)
    d = np.sqrt(np.array([0, 1, 2, 5, 18, 1000, 265**2, 266**2, 300**2], np.float64))
    b = M._background_weights(d.astype(np.float32))
    np.testing.assert_allclose(b, 2 - np.exp(np.log(0.5) / 5 * d), rtol=0, atol=4.5e-16)
    assert b[-1] == 2.0 and b[-2] == 2.0


# ------------------------------------------------------------------ image files and I/O
def test_imread_imdecode_layouts(tmp_path):
    rng = _rng(14)
    gray = rng.integers(0, 256, (13, 17)).astype(np.uint8)
    rgb = rng.integers(0, 256, (13, 17, 3)).astype(np.uint8)
    rgba = rng.integers(0, 256, (13, 17, 4)).astype(np.uint8)
    u16 = (gray.astype(np.uint16) * 257 + 3).astype(np.uint16)
    files = {}
    for name, arr in (("gray", gray), ("rgb", rgb), ("rgba", rgba), ("u16", u16)):
        files[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(arr).save(files[name])  # an encoder other than OpenCV's

    def unchanged(name):
        return cv2.imdecode(np.fromfile(files[name], np.uint8), cv2.IMREAD_UNCHANGED)

    np.testing.assert_array_equal(unchanged("gray"), gray)
    np.testing.assert_array_equal(unchanged("rgb"), rgb[..., ::-1])  # BGR
    np.testing.assert_array_equal(unchanged("rgba"), rgba[..., [2, 1, 0, 3]])  # BGRA
    got16 = unchanged("u16")
    assert got16.dtype == np.uint16
    np.testing.assert_array_equal(got16, u16)
    # protocol.read_gray: IMREAD_GRAYSCALE gives uint8 (H, W) for every layout
    np.testing.assert_array_equal(cv2.imread(files["gray"], cv2.IMREAD_GRAYSCALE), gray)
    g = cv2.imread(files["rgb"], cv2.IMREAD_GRAYSCALE)
    assert g.shape == (13, 17) and g.dtype == np.uint8
    assert np.abs(g - rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).max() <= 1.0
    np.testing.assert_array_equal(cv2.imread(files["u16"], cv2.IMREAD_GRAYSCALE), u16 >> 8)
    assert cv2.imread(str(tmp_path / "missing.png"), cv2.IMREAD_GRAYSCALE) is None
    assert cv2.imdecode(np.frombuffer(b"not an image", np.uint8), cv2.IMREAD_UNCHANGED) is None


def test_imencode_round_trip():
    yy, xx = np.mgrid[0:24, 0:32]
    img = np.dstack([xx * 7, yy * 9, xx * 3 + yy * 4]).astype(np.uint8)  # smooth, JPEG-able
    for ext, params in (
        (".png", [cv2.IMWRITE_PNG_COMPRESSION, 9]),
        (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]),
    ):
        ok, buf = cv2.imencode(ext, img, params)
        assert ok and buf.dtype == np.uint8
        back = np.asarray(Image.open(io.BytesIO(buf.tobytes())))[..., ::-1]
        assert back.shape == img.shape
        if ext == ".png":
            np.testing.assert_array_equal(back, img)
        else:
            assert np.abs(back.astype(int) - img).mean() < 3


def test_resize_shapes_and_nearest_exact():
    m = (np.arange(35).reshape(5, 7) * 7 % 255).astype(np.uint8)
    r = cv2.resize(m, (17, 3), interpolation=cv2.INTER_NEAREST_EXACT)
    ri = np.floor((np.arange(3) + 0.5) * 5 / 3).astype(int)
    ci = np.floor((np.arange(17) + 0.5) * 7 / 17).astype(int)
    np.testing.assert_array_equal(r, m[ri][:, ci])
    img = _rng(16).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    for interp in (cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_CUBIC):
        assert cv2.resize(img, (13, 9), interpolation=interp).shape == (9, 13, 3)
        assert cv2.resize(img[..., 0], (13, 9), interpolation=interp).shape == (9, 13)
    # bilinear 2x upscale of a ramp, half-pixel centres: x_src = (x + 0.5) / 2 - 0.5
    ramp = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (4, 1))
    up = cv2.resize(ramp, (40, 4), interpolation=cv2.INTER_LINEAR)
    xs = np.clip((np.arange(40) + 0.5) / 2 - 0.5, 0, 19)
    assert np.abs(up[0] - np.interp(xs, np.arange(20), ramp[0].astype(float))).max() <= 0.5


# ------------------------------------------------------------- colour (augmentation)
def test_colour_calls_of_the_augmentation():
    rgb = _rng(17).random((6, 7, 3)).astype(np.float32)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    ref = np.array([[colorsys.rgb_to_hsv(*px) for px in row] for row in rgb.astype(np.float64)])
    ref[..., 0] *= 360  # float input: hue in degrees
    np.testing.assert_allclose(hsv, ref, atol=1e-4)
    np.testing.assert_allclose(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), rgb, atol=1e-5)
    x = rgb * 255
    m = (0.7 * np.eye(3) + 0.3 * np.outer(np.ones(3), [0.299, 0.587, 0.114])).astype(np.float32)
    np.testing.assert_allclose(cv2.transform(x, m), x @ m.T, rtol=1e-5, atol=1e-3)
    mean = cv2.mean(x)
    assert len(mean) == 4
    np.testing.assert_allclose(mean[:3], x.reshape(-1, 3).mean(axis=0), rtol=1e-5)
    v = np.array([[0.5, 1.5, 2.5, 3.5, 254.5, 255.5, -0.5, 300.0, 7.49]], np.float32)
    np.testing.assert_array_equal(cv2.convertScaleAbs(v), np.clip(np.rint(np.abs(v)), 0, 255))


# ----------------------------------------------------------------- drawing and contours
def test_find_contours_returns_two_items_of_n_1_2():
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 8:30] = 1
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    assert len(contours) == 1 and hierarchy.shape == (1, 1, 4)
    c = contours[0]
    assert c.ndim == 3 and c.shape[1:] == (1, 2)
    assert sorted(map(tuple, c.reshape(-1, 2))) == [(8, 5), (8, 14), (29, 5), (29, 14)]
    img = np.zeros((30, 40, 3), np.uint8)
    cv2.drawContours(img, contours, -1, (0, 255, 0), 1)
    edge = mask.astype(bool) & ~ndimage.binary_erosion(mask)
    np.testing.assert_array_equal(img[..., 1] > 0, edge)
    empty, _ = cv2.findContours(
        np.zeros((5, 5), np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    assert len(empty) == 0


def test_text_stays_in_the_box_get_text_size_reports():
    """visualizer.draw_text / draw_box place text with getTextSize (glyphs differ in 5.x)."""
    for scale, thickness in ((0.5, 1), (1.0, 2)):
        (w, h), base = cv2.getTextSize("Ag 0.91", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        assert all(isinstance(v, int) and v > 0 for v in (w, h, base))
        img = np.zeros((80, 200, 3), np.uint8)
        org = (10, 40)
        cv2.putText(
            img,
            "Ag 0.91",
            org,
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
        ys, xs = np.nonzero(img[..., 0])
        m = thickness + 1
        assert xs.min() >= org[0] - m and xs.max() <= org[0] + w + m
        assert ys.min() >= org[1] - h - m and ys.max() <= org[1] + base + m


def test_colormap_rectangle_polylines_shapes():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    heat = cv2.applyColorMap(gray, cv2.COLORMAP_VIRIDIS)
    assert heat.shape == (16, 16, 3) and heat.dtype == np.uint8
    img = np.zeros((20, 30, 3), np.uint8)
    cv2.rectangle(img, (3, 4), (20, 15), (0, 0, 255), 1)
    ref = np.zeros((20, 30), bool)
    ref[4:16, 3:21] = True
    ref[5:15, 4:20] = False
    np.testing.assert_array_equal(img[..., 2] > 0, ref)
    for pts in (np.array([[1, 1], [10, 1]], np.int32), np.array([[[1, 1]], [[10, 1]]], np.int32)):
        canvas = np.zeros((5, 12), np.uint8)
        cv2.polylines(canvas, [pts], False, 255, 1)  # tools/evaluate.py draws curves so
        np.testing.assert_array_equal(np.nonzero(canvas[1])[0], np.arange(1, 11))


# ------------------------------------------------------------------------------- video
@pytest.mark.parametrize("name", ["clip.mp4", "clip.avi"])
def test_video_codecs_write_and_read_back(tmp_path, name):
    """mp4v / MJPG (the VideoWriter's codecs): frames, fps and count read back."""
    frames = []
    for i in range(6):
        f = np.full((48, 64, 3), 30 + 30 * i, np.uint8)
        f[:, : 8 + 6 * i] = (40, 200, 220)
        frames.append(f)
    with VideoWriter(str(tmp_path / name), fps=12.5, frame_size=(64, 48)) as w:
        for f in frames:
            w.write(f)
    assert w.path == str(tmp_path / name)
    reader = VideoReader(w.path, format="BGR")
    assert reader.kind == "video" and reader.fps == 12.5 and len(reader) == 6
    got = [item["image"].numpy().transpose(1, 2, 0) for item in reader]
    assert len(got) == 6
    for a, b in zip(got, frames):
        assert a.shape == (48, 64, 3) and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b).mean() < 12
