"""Tests for minicnn.preprocessing: real MNIST digits drawn big on paper come back as MNIST.

Each test digit is enlarged (bilinear, so strokes have smooth edges like a pen drawing), drawn
as dark ink on light paper with a margin -- or light on dark, in colour, on a transparent
canvas, off-centre on a non-square canvas, with noise -- saved as PNG or JPEG, and run through
load_image + preprocess_digit. The result must match the original 28x28 digit: same shape
(correlation), centre of mass at (14, 14), ink fitted to 20x20.
"""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicnn.preprocessing import load_image, preprocess_digit

# The first 20 test digits: every class 0-9, thin 1s and loopy 9s among them.
N_DIGITS = 20


def _mnist_dir() -> Path:
    env = os.environ.get("MINICNN_DATA_DIR")
    if env:
        return Path(env) / "mnist"
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist_digits():
    """(N_DIGITS, 28, 28) uint8: the first MNIST test images, read straight from the IDX file.

    The real loader (minicnn.datasets) is written elsewhere; until it lands the IDX file is read
    here: a 16-byte header (magic, count, rows, cols) then the pixels.
    """
    path = _mnist_dir() / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        message = (f"MNIST test images not found at {path}; set MINICNN_DATA_DIR to the folder "
                   "holding mnist/")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with gzip.open(path, "rb") as f:
        raw = f.read(16 + N_DIGITS * 28 * 28)
    assert int.from_bytes(raw[:4], "big") == 2051, "not an IDX3 image file"
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(N_DIGITS, 28, 28)


# --------------------------------------------------------------------------------------------
# Drawing digits as a person or a phone would
# --------------------------------------------------------------------------------------------


def enlarge(digit: np.ndarray, scale: float) -> np.ndarray:
    """(28, 28) uint8 -> (round(28 scale), ...) float ink coverage in [0, 1], smooth edges."""
    size = round(28 * scale)
    img = Image.fromarray(digit.astype(np.float32) / 255.0)
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR)).clip(0.0, 1.0)


def on_canvas(ink: np.ndarray, height: int, width: int, top: int, left: int) -> np.ndarray:
    """Place ink coverage (h, w) on a (height, width) canvas of zeros at (top, left)."""
    canvas = np.zeros((height, width))
    canvas[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return canvas


def paint(coverage: np.ndarray, paper, ink) -> np.ndarray:
    """Mix paper and ink colours (gray levels or RGB tuples, 0..255) by coverage -> uint8."""
    paper, ink = np.asarray(paper, float), np.asarray(ink, float)
    c = coverage[..., None] if paper.ndim else coverage
    return (paper * (1 - c) + ink * c).round().clip(0, 255).astype(np.uint8)


def draw(digit, variant, tmp_path, rng):
    """One digit drawn in one variant -> what to pass to preprocess_digit (a path or an array)."""
    cov = on_canvas(enlarge(digit, 10), 400, 360, 60, 40)  # 280 px digit, margins 40..80 px
    if variant == "gray.png":
        Image.fromarray(paint(cov, 250, 15)).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "gray.jpg":
        Image.fromarray(paint(cov, 250, 15)).save(tmp_path / "d.jpg", quality=85)
        return tmp_path / "d.jpg"
    if variant == "rgb.png":  # blue ballpoint on cream paper
        Image.fromarray(paint(cov, (245, 240, 222), (25, 35, 120))).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "rgb.jpg":
        rgb = paint(cov, (245, 240, 222), (25, 35, 120))
        Image.fromarray(rgb).save(tmp_path / "d.jpg", quality=80)
        return tmp_path / "d.jpg"
    if variant == "rgba_transparent.png":
        # A drawing app's export: black strokes, fully transparent BLACK background. Reading
        # only the RGB (or converting straight to gray) would give an all-black picture.
        rgba = np.zeros((*cov.shape, 4), np.uint8)
        rgba[..., 3] = (cov * 255).round().astype(np.uint8)
        Image.fromarray(rgba).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "light_on_dark.png":  # chalk on a blackboard
        Image.fromarray(paint(cov, 40, 235)).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "non_square.png":  # tall canvas, digit off-centre, odd scale
        cov = on_canvas(enlarge(digit, 7.3), 600, 300, 330, 20)
        Image.fromarray(paint(cov, 235, 30)).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "noisy.png":  # paper texture / sensor noise, std 5% of the range
        gray = paint(cov, 235, 30).astype(float) + rng.normal(0, 0.05 * 255, cov.shape)
        Image.fromarray(gray.round().clip(0, 255).astype(np.uint8)).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "noisy_rgb.jpg":
        rgb = paint(cov, (240, 238, 230), (20, 20, 30)).astype(float)
        rgb += rng.normal(0, 0.04 * 255, rgb.shape)
        Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8)).save(tmp_path / "d.jpg",
                                                                          quality=75)
        return tmp_path / "d.jpg"
    if variant == "palette.png":
        rgb = Image.fromarray(paint(cov, (250, 250, 250), (200, 20, 20)))
        rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "gray16.png":
        gray16 = (65535 * (1 - 0.9 * cov)).round().astype(np.uint16)
        Image.fromarray(gray16).save(tmp_path / "d.png")
        return tmp_path / "d.png"
    if variant == "float_array":
        return 0.95 - 0.9 * cov
    if variant == "rgba_array":
        rgba = np.zeros((*cov.shape, 4))
        rgba[..., 3] = cov
        return rgba
    raise AssertionError(variant)


VARIANTS = [
    "gray.png", "gray.jpg", "rgb.png", "rgb.jpg", "rgba_transparent.png", "light_on_dark.png",
    "non_square.png", "noisy.png", "noisy_rgb.jpg", "palette.png", "gray16.png", "float_array",
    "rgba_array",
]


# --------------------------------------------------------------------------------------------
# Measuring the result
# --------------------------------------------------------------------------------------------


def correlation(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def best_shift_correlation(a, b):
    """Correlation allowing a shift of up to 1 pixel each way.

    The MNIST recipe rounds the centre-of-mass shift to whole pixels, so a centre of mass near a
    half-pixel may land one pixel off from the original; for a thin "1" that alone can drop
    the plain correlation to ~0.5 although the pictures are the same.
    """
    return max(correlation(np.roll(a, (dy, dx), axis=(0, 1)), b)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def centre_of_mass(x):
    rows, cols = np.indices(x.shape)
    return (rows * x).sum() / x.sum(), (cols * x).sum() / x.sum()


def ink_box(x):
    rows, cols = np.flatnonzero(x.any(axis=1)), np.flatnonzero(x.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def assert_mnist_like(out):
    """Shape, dtype, range, recipe geometry of one preprocessed digit."""
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    cy, cx = centre_of_mass(out)
    # Rounding the shift to whole pixels leaves at most half a pixel.
    assert abs(cy - 14) <= 0.5 + 1e-6 and abs(cx - 14) <= 0.5 + 1e-6, (cy, cx)
    h, w = ink_box(out)
    assert max(h, w) == 20 and min(h, w) <= 20, (h, w)
    assert (out == 0).mean() > 0.5  # the background really is 0, noise and all


# --------------------------------------------------------------------------------------------
# Round trips on real digits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_drawn_digits_come_back_as_mnist(variant, mnist_digits, tmp_path):
    rng = np.random.default_rng(7)
    plain, shifted = [], []
    for i, digit in enumerate(mnist_digits):
        source = draw(digit, variant, tmp_path, rng)
        out = preprocess_digit(source)
        assert_mnist_like(out)
        original = digit / 255.0
        plain.append(correlation(out, original))
        shifted.append(best_shift_correlation(out, original))
        assert shifted[-1] > 0.85, f"digit {i}: correlation {shifted[-1]:.3f}"
    assert np.mean(shifted) > 0.95, np.round(shifted, 3)
    assert np.mean(plain) > 0.9, np.round(plain, 3)


def test_polarity_does_not_matter(mnist_digits):
    for digit in mnist_digits[:8]:
        cov = on_canvas(enlarge(digit, 6), 220, 200, 20, 15)
        dark_on_light = preprocess_digit(paint(cov, 240, 20))
        light_on_dark = preprocess_digit(paint(cov, 20, 240))
        assert np.abs(dark_on_light - light_on_dark).max() < 0.02


def test_path_as_str_and_path_and_array_agree(mnist_digits, tmp_path):
    cov = on_canvas(enlarge(mnist_digits[3], 5), 180, 180, 20, 20)
    gray = paint(cov, 245, 10)
    Image.fromarray(gray).save(tmp_path / "x.png")
    from_array = preprocess_digit(gray)
    from_file = preprocess_digit(tmp_path / "x.png")
    assert np.array_equal(preprocess_digit(str(tmp_path / "x.png")), from_file)
    assert np.allclose(from_file, from_array, atol=1e-5)  # load_image gives float32
    assert np.allclose(preprocess_digit(gray / 255.0), from_array, atol=1e-6)
    assert np.allclose(preprocess_digit(gray[:, :, None]), from_array, atol=1e-6)


def test_mnist_digit_itself_is_nearly_unchanged(mnist_digits):
    for digit in mnist_digits:
        out = preprocess_digit(digit)
        assert_mnist_like(out)
        assert best_shift_correlation(out, digit / 255.0) > 0.95


def test_small_digit_is_enlarged_to_20(mnist_digits):
    for digit in mnist_digits[:10]:
        cov = on_canvas(enlarge(digit, 0.6), 30, 30, 7, 5)  # a 17x17 thumbnail, ~12 px of ink
        out = preprocess_digit(paint(cov, 255, 0))
        assert_mnist_like(out)
        assert best_shift_correlation(out, digit / 255.0) > 0.75


def test_stray_specks_far_from_the_digit_are_ignored(mnist_digits):
    cov = on_canvas(enlarge(mnist_digits[0], 8), 320, 320, 48, 48)
    clean = preprocess_digit(paint(cov, 250, 10))
    speckled = paint(cov, 250, 10)
    speckled[5, 5] = speckled[300, 310] = 190  # faint dust, below Otsu's threshold
    assert np.array_equal(preprocess_digit(speckled), clean)


# --------------------------------------------------------------------------------------------
# load_image
# --------------------------------------------------------------------------------------------


def test_load_image_modes(tmp_path):
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    out = load_image(tmp_path / "l.png")
    assert out.dtype == np.float32 and out.shape == (9, 7)
    assert np.allclose(out, gray / 255.0)

    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    luma = rgb @ np.array([0.299, 0.587, 0.114]) / 255.0
    assert np.allclose(load_image(tmp_path / "rgb.png"), luma, atol=1e-6)

    rgba = np.zeros((9, 7, 4), np.uint8)  # transparent black ...
    rgba[2, 3] = (0, 0, 0, 255)  # ... with one opaque black pixel
    rgba[4, 4] = (0, 0, 0, 128)  # and one half-transparent one
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    expected = np.ones((9, 7))
    expected[2, 3], expected[4, 4] = 0.0, 1 - 128 / 255
    assert np.allclose(out, expected, atol=1e-6)

    gray16 = rng.integers(0, 65536, (9, 7)).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    assert np.allclose(load_image(tmp_path / "g16.png"), gray16 / 65535.0, atol=1e-6)

    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB")) @ np.array([0.299, 0.587, 0.114]) / 255.0
    assert np.allclose(load_image(tmp_path / "p.png"), expected, atol=1e-6)

    Image.fromarray(gray).save(tmp_path / "l.jpg", quality=95)
    assert np.abs(load_image(tmp_path / "l.jpg") - gray / 255.0).mean() < 0.05


def test_load_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here.png"):
        load_image(tmp_path / "nothing_here.png")
    with pytest.raises(FileNotFoundError, match="nothing_here.png"):
        preprocess_digit(tmp_path / "nothing_here.png")


def test_load_image_not_an_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is a text file, not a picture\n")
    with pytest.raises(ValueError, match=r"notes\.png.*could not be read as PNG/JPEG"):
        load_image(bad)
    with pytest.raises(ValueError, match=r"notes\.png.*PNG/JPEG"):
        preprocess_digit(str(bad))


def test_load_image_truncated_file(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png.*PNG/JPEG"):
        load_image(tmp_path / "cut.png")


# --------------------------------------------------------------------------------------------
# Errors of preprocess_digit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [np.full((40, 30), 255, np.uint8), np.zeros((40, 30)), np.full((40, 30, 3), 0.3),
     np.zeros((40, 30, 4))],
    ids=["white", "black", "gray_rgb", "transparent"],
)
def test_blank_image(image):
    with pytest.raises(ValueError, match="looks blank: no digit found"):
        preprocess_digit(image)


def test_blank_low_contrast_noise():
    rng = np.random.default_rng(1)
    paper = (0.8 + rng.normal(0, 0.01, (60, 60))).clip(0, 1)
    with pytest.raises(ValueError, match="looks blank: no digit found"):
        preprocess_digit(paper)


def test_blank_png_file(tmp_path):
    Image.new("RGB", (50, 40), (255, 255, 255)).save(tmp_path / "white.png")
    with pytest.raises(ValueError, match="looks blank"):
        preprocess_digit(tmp_path / "white.png")


@pytest.mark.parametrize("shape", [(28,), (28, 28, 2), (2, 28, 28, 3), (28, 28, 5)])
def test_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"preprocess_digit.*\(H, W\).*got shape " +
                       str(shape).replace("(", r"\(").replace(")", r"\)")):
        preprocess_digit(np.zeros(shape))


def test_nan_and_out_of_range():
    image = np.zeros((30, 30))
    image[10:20, 14:16] = 1.0
    image[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        preprocess_digit(image)
    with pytest.raises(ValueError, match="divide by 255"):
        preprocess_digit(np.where(np.isnan(image), 0, image) * 255.0)
    with pytest.raises(ValueError, match="0..255"):
        preprocess_digit(np.full((30, 30), 300, dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        preprocess_digit(np.zeros((0, 5)))


# --------------------------------------------------------------------------------------------
# Bounded memory and time for any picture (issue 12)
# --------------------------------------------------------------------------------------------
from hardening_fixtures import png_claiming, png_header_only, traced_peak  # noqa: E402

from minicnn.preprocessing import (  # noqa: E402
    MAX_IMAGE_PIXELS,
    WORK_SIDE,
    ImageTooLargeError,
    read_image,
)


@pytest.mark.parametrize("width, height", [(4097, 4096), (12000, 12000), (20000, 20000)])
def test_pictures_over_the_pixel_cap_are_refused_before_decoding(tmp_path, width, height):
    # Before: 12000 x 12000 took 26 s and 6.5 GB; 20000 x 20000 ended in Pillow's
    # DecompressionBombError.
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(width, height))
    for call in (load_image, preprocess_digit):
        error, peak = traced_peak(lambda call=call: call(path))
        assert isinstance(error, ImageTooLargeError), error
        assert isinstance(error, ValueError)
        pixels = f"{width * height:,}"
        assert pixels in str(error) and f"{MAX_IMAGE_PIXELS:,} pixels" in str(error), error
        assert peak < 5e6, peak
    array = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (height, width), (0, 0))
    with pytest.raises(ImageTooLargeError, match=rf"{width} x {height} pixels"):
        preprocess_digit(array)  # arrays too: one cap for every entry point


def test_a_picture_at_the_cap_is_shrunk_band_by_band(tmp_path, mnist_digits):
    # A 4096 x 4096 RGBA canvas with a digit: the float pipeline runs on 1024 x 1024, and no
    # full-size float copy exists (before: about 540 MB of float64 for the four channels).
    side = 4096
    ink = (enlarge(mnist_digits[0], 2400 / 28) * 255).astype(np.uint8)
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[800:3200, 900:3300, 3] = ink  # black ink on a transparent canvas
    path = tmp_path / "big.png"
    Image.fromarray(rgba).save(path)
    small = tmp_path / "small.png"
    Image.fromarray(rgba).resize((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX).save(small)
    gray, peak = traced_peak(lambda: load_image(path))
    assert gray.shape == (WORK_SIDE, WORK_SIDE) and gray.dtype == np.float32
    assert peak < 60e6, peak
    from_big, peak = traced_peak(lambda: preprocess_digit(path))
    assert peak < 60e6, peak
    from_small = preprocess_digit(small)
    assert np.abs(from_big - from_small).max() < 0.05
    assert_mnist_like(from_big)
    assert best_shift_correlation(from_big, mnist_digits[0] / 255.0) > 0.85
    # The same picture as an array takes the same path.
    from_array, peak = traced_peak(lambda: preprocess_digit(rgba))
    assert peak < 60e6, peak
    assert np.abs(from_array - from_big).max() < 0.02


def test_shrinking_is_an_exact_area_average():
    from minicnn.preprocessing import _box_shrink

    x = np.arange(7 * 5, dtype=np.float64).reshape(7, 5)
    out = _box_shrink(x, 3)
    assert out.shape == (3, 2)
    assert out[0, 0] == x[:3, :3].mean() and out[2, 1] == x[6:, 3:].mean()
    assert out[1, 1] == x[3:6, 3:5].mean()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_a_big_photo_is_applied(tmp_path, orientation):
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    base = rng.integers(0, 256, (12, 8), dtype=np.uint8).repeat(200, 0).repeat(200, 1)
    im = Image.fromarray(base)  # 2400 x 1600, blocks of 200 px: survives JPEG and shrinking
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    im.save(path, quality=95, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("L"),
                          dtype=np.float64) / 255
    got = load_image(path)
    factor = 2400 // got.shape[0] if got.shape[0] > got.shape[1] else 2400 // got.shape[1]
    assert max(got.shape) <= WORK_SIDE
    from minicnn.preprocessing import _box_shrink
    assert got.shape == _box_shrink(expected, factor).shape
    assert np.abs(got - _box_shrink(expected, factor)).mean() < 0.02


def test_folders_devices_and_foreign_formats_get_their_own_message(tmp_path):
    # Before: a folder or /dev/zero was "no such file"; EPS went to Ghostscript.
    with pytest.raises(ValueError, match="is a folder, not an image file"):
        load_image(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match="is not a regular file"):
            load_image("/dev/zero")
    eps = tmp_path / "digit.png"  # the name says PNG; the content decides
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n")
    with pytest.raises(ValueError, match="its content is none of PNG, JPEG"):
        load_image(eps)
    import io
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, format="BMP")
    with pytest.raises(ValueError, match="none of PNG, JPEG"):
        read_image(io.BytesIO(png.getvalue()), "server", ("PNG", "JPEG"))


def test_a_blank_picture_at_the_cap_is_cheap(tmp_path):
    path = tmp_path / "blank.png"
    path.write_bytes(png_claiming(4096, 4096))
    error, peak = traced_peak(lambda: preprocess_digit(path))
    assert isinstance(error, ValueError) and "looks blank" in str(error)
    assert peak < 60e6, peak
