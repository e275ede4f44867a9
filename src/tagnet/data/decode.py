"""Image files as 8-bit RGB: the one decode of every image (EXIF rotation, 16-bit and float scans, HEIC), and ids to files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tagnet.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif")
HEIF_SUFFIXES = (".heic", ".heif")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_ORIENTATION = 0x0112  # the EXIF tag
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16-bit and 32-bit grey: scaled to 8 bits


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened image as 8-bit RGB the way it is meant to be seen: EXIF orientation applied, 16-bit grey
    (I;16, or I holding 0..65535) scaled by the 16-bit range, other 32-bit integer and float (F) images scaled by
    their own min..max range; CMYK, palette, grey+alpha and RGBA converted by Pillow."""
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_MODES:
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.min() >= 0 and values.max() <= 65535):
            low, high = 0.0, 65535.0
        else:
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        clean = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
        scaled = (clean - low) / (high - low) if high > low else np.zeros_like(clean)
        image = Image.fromarray(np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8))
    return image.convert("RGB")


def decode_image(path: str | Path, *, draft_size: int | None = None) -> Image.Image:
    """Open and decode one image file (JPEG, PNG, TIFF, WebP, HEIC/HEIF, ...) as 8-bit RGB (see to_rgb).

    Args:
        draft_size: let a JPEG decoder scale down to no less than this side length (faster for large photos).
    Raises:
        DataError: the file is missing or unreadable, or it is HEIC/HEIF and pillow-heif is not installed.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in HEIF_SUFFIXES:
            _register_heif(path)
        try:
            return _decode(path, draft_size)
        except UnidentifiedImageError:
            if not _is_heif(path):  # a HEIC photo renamed .jpg: Pillow knows it once pillow-heif is registered
                raise
            _register_heif(path)
            return _decode(path, draft_size)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None


def _decode(path: Path, draft_size: int | None) -> Image.Image:
    with Image.open(path) as image:
        if draft_size is not None:
            image.draft("RGB", (draft_size, draft_size))  # JPEG: decode at reduced scale when much larger
        return to_rgb(image)


def _is_heif(path: Path) -> bool:
    """Whether the file starts like an HEIF container (ftyp box with a HEIF brand), whatever its suffix."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False  # Image.open reports it
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _register_heif(path: Path) -> None:
    try:
        import pillow_heif  # noqa: PLC0415 (only HEIC/HEIF files need it)
    except ImportError:
        raise DataError(f"{path}: a HEIC/HEIF image needs pillow-heif: pip install 'tagnet[heif]' "
                        "(or convert the photos to JPEG)") from None
    pillow_heif.register_heif_opener()  # idempotent


def images_folder(table_meta: dict, images_dir: str | Path | None) -> str | Path | None:
    """The folder a label table's image ids are relative to: `images_dir` when given, else the one its format implies
    (a Pascal VOC set's JPEGImages beside Annotations, a folder-per-label root), else None (the working folder).
    Every command resolves images through this, so train, evaluate and data check find the same files."""
    return images_dir if images_dir is not None else table_meta.get("images_dir")


def resolve_image_paths(items: Sequence[str], images_dir: str | Path | None) -> list[Path]:
    """Item ids/relative paths joined to `images_dir` (absolute item paths are kept).

    An id without an image suffix that is not a file itself (Kaggle's "train_21983") resolves to the one image
    file with that name plus an image suffix in its folder; one that matches none stays as it is (reported missing).

    Raises:
        DataError: an id matches several image files (naming them).
    """
    root = Path(images_dir) if images_dir is not None else Path(".")
    listings: dict[Path, dict[str, list[Path]]] = {}
    return [resolve_image_path(item, root, listings) for item in items]


def resolve_image_path(item: str, root: Path, listings: dict[Path, dict[str, list[Path]]] | None = None) -> Path:
    """One item of resolve_image_paths; `listings` caches folder listings across calls."""
    path = Path(item) if Path(item).is_absolute() else root / item
    if path.suffix.lower() not in IMAGE_SUFFIXES and not path.exists():
        return image_with_stem(path, listings)
    return path


def image_with_stem(path: Path, listings: dict[Path, dict[str, list[Path]]] | None = None) -> Path:
    """The one image file named `path` plus an image suffix ("a/train_7" -> "a/train_7.jpg"), else `path` itself.

    Args:
        listings: a cache of folder listings shared by calls (filled here).
    Raises:
        DataError: several image files have that name (train_7.jpg and train_7.png).
    """
    listings = {} if listings is None else listings
    folder = path.parent
    if folder not in listings:
        by_stem: dict[str, list[Path]] = {}
        if folder.is_dir():
            for file in folder.iterdir():
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    by_stem.setdefault(file.name[:-len(file.suffix)], []).append(file)
        listings[folder] = by_stem
    found = sorted(listings[folder].get(path.name, []))
    if len(found) > 1:
        raise DataError(f"item {path.name!r} has no file suffix and matches {len(found)} images in {folder}: "
                        f"{', '.join(f.name for f in found)}; write the file name in the label file")
    return found[0] if found else path
