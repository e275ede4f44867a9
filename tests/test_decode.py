"""Images as cameras and scanners write them: EXIF rotation, 16-bit and float scans, HEIC, CMYK, palette, alpha."""

import numpy as np
import pytest
from PIL import Image

from tagnet.data.check import check_dataset
from tagnet.data.decode import decode_image, image_with_stem, resolve_image_paths
from tagnet.data.images import load_image, to_model_size
from tagnet.errors import DataError


def gradient(h: int = 6, w: int = 8) -> np.ndarray:
    return np.arange(h * w, dtype=np.float64).reshape(h, w) / (h * w - 1)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red top-left as stored
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write portrait photos
    image.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=100, subsampling=0)
    decoded = decode_image(tmp_path / "phone.jpg")
    assert decoded.size == (4, 6)  # width and height swapped
    assert tuple(np.asarray(decoded)[0, -1]) == pytest.approx((255, 0, 0), abs=40)  # top-left went top-right
    assert load_image(tmp_path / "phone.jpg", 6).shape == (6, 6, 3)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_is_scaled_by_the_16_bit_range(tmp_path, suffix):
    values = (gradient() * 4000).astype(np.uint16)  # a dark scan: 0..4000 of 65535
    Image.fromarray(values).save(tmp_path / f"scan{suffix}")
    with Image.open(tmp_path / f"scan{suffix}") as raw:
        assert raw.mode in ("I;16", "I")  # what Pillow reads back
    decoded = np.asarray(decode_image(tmp_path / f"scan{suffix}"))
    expected = np.rint(values / 65535 * 255).astype(np.uint8)
    assert decoded.shape == (6, 8, 3) and (decoded[..., 0] == expected).all() and (decoded[..., 2] == expected).all()
    assert decoded.max() < 255  # Pillow's plain convert("RGB") makes this pure white


def test_float_tiff_is_scaled_by_its_range(tmp_path):
    values = (gradient() * 3.0 - 1.0).astype(np.float32)  # -1..2
    Image.fromarray(values, mode="F").save(tmp_path / "depth.tif")
    decoded = np.asarray(decode_image(tmp_path / "depth.tif"))[..., 0]
    assert decoded[0, 0] == 0 and decoded[-1, -1] == 255
    assert (decoded == np.rint((values + 1.0) / 3.0 * 255)).all()


def test_32_bit_integer_beyond_16_bits_is_scaled_by_its_range(tmp_path):
    values = (gradient() * 200000).astype(np.int32)
    decoded = np.asarray(to_model_size(Image.fromarray(values, mode="I"), 8))
    assert decoded.shape == (8, 8, 3) and decoded.min() == 0 and decoded.max() >= 250


@pytest.mark.parametrize("mode", ["CMYK", "P", "LA", "RGBA", "L", "1"])
def test_other_modes_match_pillow_convert(tmp_path, mode):
    rgb = Image.fromarray((np.random.default_rng(0).random((6, 8, 3)) * 255).astype(np.uint8))
    image = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    image.save(path)
    with Image.open(path) as reread:
        expected = np.asarray(reread.convert("RGB"))
    assert (np.asarray(decode_image(path)) == expected).all()


def test_heic_is_decoded_with_pillow_heif(tmp_path):
    import pillow_heif  # tagnet[heif] (in tagnet[all])
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[:, :8] = (200, 30, 30)
    pillow_heif.from_bytes(mode="RGB", size=(16, 16), data=pixels.tobytes()).save(tmp_path / "IMG_0001.HEIC", quality=95)
    decoded = np.asarray(decode_image(tmp_path / "IMG_0001.HEIC")).astype(int)
    assert decoded.shape == (16, 16, 3)
    assert abs(decoded[4, 2] - (200, 30, 30)).max() < 30 and decoded[4, 12].max() < 30
    (tmp_path / "IMG_0001.HEIC").rename(tmp_path / "renamed.jpg")  # a phone photo given the wrong suffix
    assert (np.asarray(decode_image(tmp_path / "renamed.jpg")).astype(int) == decoded).all()


def test_float_tiff_with_nan_and_constant_images(tmp_path):
    values = gradient().astype(np.float32)
    values[0, 0] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "gaps.tif")
    decoded = np.asarray(decode_image(tmp_path / "gaps.tif"))[..., 0]
    assert decoded[0, 0] == decoded[0, 1] == 0 and decoded[-1, -1] == 255  # NaN shown as the minimum
    Image.fromarray(np.full((3, 3), 7.5, dtype=np.float32), mode="F").save(tmp_path / "flat.tif")
    assert (np.asarray(decode_image(tmp_path / "flat.tif")) == 0).all()


def test_heic_without_pillow_heif_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_heif(name, *args, **kwargs):
        if name == "pillow_heif":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_heif)
    (tmp_path / "a.heic").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0")
    with pytest.raises(DataError, match=r"a\.heic: a HEIC/HEIF image needs pillow-heif: pip install 'tagnet\[heif\]'"):
        decode_image(tmp_path / "a.heic")


def test_unreadable_and_missing_images(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.jpg: not a readable image"):
        decode_image(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="image file not found"):
        load_image(tmp_path / "none.jpg", 4)


def test_check_reads_16_bit_images_like_training(tmp_path):
    Image.fromarray((gradient() * 1000).astype(np.uint16)).save(tmp_path / "scan.png")
    (tmp_path / "labels.csv").write_text("image,labels\nscan.png,x\n")
    report = check_dataset(tmp_path / "labels.csv", images_dir=tmp_path, min_examples=1)
    assert report.usable and report.image_sizes == {"8x6": 1}


def test_ids_without_suffix_resolve_to_the_one_image_with_that_stem(tmp_path):
    for name in ("train_1.jpg", "train_2.png", "train_2.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert resolve_image_paths(["train_1", "train_1.jpg", "train_9"], tmp_path) == [
        tmp_path / "train_1.jpg", tmp_path / "train_1.jpg", tmp_path / "train_9"]
    with pytest.raises(DataError, match=r"item 'train_2' has no file suffix and matches 2 images .*train_2\.jpg, train_2\.png"):
        resolve_image_paths(["train_2"], tmp_path)
    assert image_with_stem(tmp_path / "notes") == tmp_path / "notes"  # not an image suffix
