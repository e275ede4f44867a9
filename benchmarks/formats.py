"""Real files from real tools: read every fixture in tests/fixtures as `tagnet data check` does, and decode camera and
scanner images (written here with Pillow), printing one Markdown table row per file.

Every label file is read with no option (the format is detected); the text exports are also read for text
training with text_column "text". The image table compares tagnet's decode with Pillow's plain convert("RGB").

Run: python benchmarks/formats.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tagnet.data.check import check_dataset
from tagnet.data.decode import decode_image
from tagnet.data.labels import read_labels_with_texts
from tagnet.data.feature_table import read_feature_table

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
LABEL_FILES = [  # (tool and format, fixture, what a user types beyond the path)
    ("CVAT for images 1.1 XML", "cvat_for_images_1.1.xml", "nothing"),
    ("Label Studio JSON (image tasks)", "label_studio_images.json", "nothing"),
    ("Label Studio JSON (one text task)", "label_studio_text_task.json", "--text-column text to train on the text"),
    ("Label Studio CSV", "label_studio_export.csv", "nothing"),
    ("spaCy textcat JSONL", "spacy_textcat.jsonl", "--text-column text to train on the text"),
    ("Hugging Face save_to_disk", "hf_scene_save_to_disk", "nothing"),
    ("Hugging Face Parquet", "hf_text_tags.parquet", "--text-column text to train on the text"),
    ("Roboflow COCO", "roboflow_coco/_annotations.coco.json", "nothing"),
    ("pandas to_csv (index written)", "pandas_to_csv_index.csv", "nothing"),
    ("Kaggle one-hot + class id, re-saved by pandas", "kaggle_onehot_class_id.csv", "nothing"),
    ("MULAN ARFF + XML (escaped quotes, nominal)", "mulan_birds-train.arff", "nothing"),
    ("MEKA ARFF (-C 3, string id, nominals)", "meka_music.arff", "nothing"),
    ("MEKA ARFF sparse (-C -2)", "meka_scene_negative_c.arff", "nothing"),
]
TEXT_FILES = ("label_studio_text_task.json", "spacy_textcat.jsonl", "hf_text_tags.parquet")


def label_rows() -> list[str]:
    """One table row per label fixture: format found, items x labels, notes and problems data check reports."""
    rows = []
    for tool, name, todo in LABEL_FILES:
        start = time.perf_counter()
        report = check_dataset(FIXTURES / name, min_examples=1)
        seconds = time.perf_counter() - start
        found = "; ".join(report.notes + [f"{p.severity} {p.kind}: {p.message}" for p in report.problems]) or "-"
        extra = ""
        if name in TEXT_FILES:
            _, texts = read_labels_with_texts(FIXTURES / name, "text")
            extra = f"; {len(texts)} texts"
        if name.endswith(".arff"):
            extra = f"; {len(read_feature_table(FIXTURES / name).feature_names)} features"
        status = "usable" if report.usable else "NOT usable"
        rows.append(f"| {tool} | `{name}` | {report.format} | {report.items} x {len(report.labels)}{extra} | "
                    f"{status}: {found} | {todo} | {seconds:.2f} |")
    return rows


def image_rows(folder: Path) -> list[str]:
    """Camera and scanner images written with Pillow, decoded by tagnet and by a plain Image.convert("RGB")."""
    gradient = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    photo = Image.fromarray((np.dstack([gradient] * 3) * 255).astype(np.uint8))
    exif = photo.getexif()
    exif[0x0112] = 6
    photo.save(folder / "phone.jpg", exif=exif.tobytes())
    Image.fromarray((gradient * 4000).astype(np.uint16)).save(folder / "scan16.png")
    Image.fromarray((gradient * 4000).astype(np.uint16)).save(folder / "scan16.tif")
    Image.fromarray((gradient * 3 - 1).astype(np.float32), mode="F").save(folder / "depth.tif")
    photo.convert("CMYK").save(folder / "print.tif")
    photo.convert("P").save(folder / "palette.png")
    import pillow_heif  # noqa: PLC0415 (tagnet[heif])

    pillow_heif.from_pillow(photo).save(folder / "iphone.heic")
    rows = []
    for name, kind in (("phone.jpg", "JPEG, EXIF orientation 6"), ("scan16.png", "16-bit grey PNG (0..4000)"),
                       ("scan16.tif", "16-bit grey TIFF (0..4000)"), ("depth.tif", "float TIFF (-1..2)"),
                       ("print.tif", "CMYK TIFF"), ("palette.png", "palette PNG"), ("iphone.heic", "HEIC")):
        try:  # before decode_image, which registers the HEIF opener with Pillow
            with Image.open(folder / name) as image:
                plain = image.convert("RGB")
            theirs = f"{plain.width}x{plain.height}, mean {np.asarray(plain).mean():.0f}"
        except Exception as exc:  # Pillow alone cannot open HEIC
            theirs = f"{type(exc).__name__}"
        ours = decode_image(folder / name)
        rows.append(f"| {kind} | {ours.width}x{ours.height}, mean {np.asarray(ours).mean():.0f} | {theirs} |")
    return rows


def main() -> None:
    print("| format | fixture | read as | items x labels | data check | user had to | s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(label_rows()))
    print("\n| image | tagnet decode_image | Pillow convert('RGB') |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        print("\n".join(image_rows(Path(folder))))


if __name__ == "__main__":
    main()
