"""Real files from real tools: read every fixture in tests/fixtures as `tagnet data check` does, and decode camera and
scanner images (written here with Pillow), printing one Markdown table row per file.

Every label file is read with no option (the format is detected: every format module scores the file, see
tagnet.data.formats); each row shows the reading chosen, the runner-up, the first item as read and data check's
verdict. The text exports are also read for text training with their text column. Files that must be refused are
listed with the one-line refusal. The image table compares tagnet's decode with Pillow's plain convert("RGB").

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
    ("Label Studio CSV, task without annotation column", "label_studio_no_annotation.csv", "(refused)"),
    ("spaCy textcat JSONL", "spacy_textcat.jsonl", "--text-column text to train on the text"),
    ("Prodigy textcat JSONL (db-out)", "prodigy_textcat.jsonl", "--text-column text to train on the text"),
    ("Hugging Face save_to_disk", "hf_scene_save_to_disk", "nothing"),
    ("Hugging Face Parquet", "hf_text_tags.parquet", "--text-column text to train on the text"),
    ("Roboflow COCO", "roboflow_coco/_annotations.coco.json", "nothing"),
    ("pandas to_csv (index written)", "pandas_to_csv_index.csv", "nothing"),
    ("Kaggle one-hot + class id, re-saved by pandas", "kaggle_onehot_class_id.csv", "nothing"),
    ("pandas fold file: index, one-hot, then the class id", "pandas_fold_onehot_label.csv", "nothing"),
    ("list literals (Keras arXiv style)", "arxiv_terms_list_literal.csv", "--text-column summaries to train on text"),
    ("Open Images boxes (one row per box)", "openimages_boxes.csv", "nothing"),
    ("long JSON Lines (one record per annotation)", "long_annotations.jsonl", "nothing"),
    ("YOLO Darknet (obj.names, obj/*.txt beside images)", "yolo_darknet", "nothing"),
    ("YOLO Ultralytics (data.yaml, images/ + labels/)", "yolo_ultralytics", "nothing"),
    ("SageMaker Ground Truth, image classification", "groundtruth_classification.manifest", "--images DIR"),
    ("SageMaker Ground Truth, multi-label", "groundtruth_multilabel.manifest", "--images DIR"),
    ("SageMaker Ground Truth, object detection", "groundtruth_detection.manifest", "--images DIR"),
    ("Labelbox NDJSON export v2", "labelbox_export_v2.ndjson", "nothing"),
    ("V7 Darwin JSON 2.0 (folder)", "darwin_json_2.0", "nothing"),
    ("CelebA attribute list (count line, -1/1)", "celeba_list_attr.txt", "nothing"),
    ("MULAN ARFF + XML (escaped quotes, nominal)", "mulan_birds-train.arff", "nothing"),
    ("MULAN ARFF + XML spelling names with other escapes", "mulan_escapes.arff", "nothing"),
    ("MEKA ARFF (-C 3, string id, nominals)", "meka_music.arff", "nothing"),
    ("MEKA ARFF sparse (-C -2)", "meka_scene_negative_c.arff", "nothing"),
]
TEXT_FILES = {"label_studio_text_task.json": "text", "spacy_textcat.jsonl": "text", "hf_text_tags.parquet": "text",
              "prodigy_textcat.jsonl": "text", "arxiv_terms_list_literal.csv": "summaries"}


def _cell(text: str) -> str:
    return text.replace(str(FIXTURES) + "/", "").replace("|", "\\|").replace("\n", " ")


def label_rows() -> list[str]:
    """One table row per label fixture: the reading and runner-up, items x labels, the first item, data check."""
    rows = []
    for tool, name, todo in LABEL_FILES:
        start = time.perf_counter()
        report = check_dataset(FIXTURES / name, min_examples=1)
        seconds = time.perf_counter() - start
        found = "; ".join(report.notes + [f"{p.severity} {p.kind}: {p.message}" for p in report.problems
                                          if p.kind not in ("rare label", "empty label set", "constant label")]) or "-"
        extra = ""
        if name in TEXT_FILES:
            _, texts = read_labels_with_texts(FIXTURES / name, TEXT_FILES[name])
            extra = f"; {len(texts)} texts"
        if name.endswith(".arff"):
            extra = f"; {len(read_feature_table(FIXTURES / name).feature_names)} features"
        reading = f"**{report.reading['format']}**: {report.reading['reason']}" if report.reading else "-"
        other = (f"{report.runner_up['format']} ({report.runner_up['score']:.2f})" if report.runner_up else "-")
        first = (f"{report.samples[0]['item']} -> {', '.join(report.samples[0]['labels']) or '(none)'}"
                 if report.samples else "-")
        status = "usable" if report.usable else "NOT usable"
        rows.append(f"| {tool} | `{name}` | {_cell(reading)} | {_cell(other)} | {report.items} x {len(report.labels)}{extra} "
                    f"| {_cell(first)} | {status}: {_cell(found)} | {todo} | {seconds:.2f} |")
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
    print("| format | fixture | read as | runner-up (score) | items x labels | first item as read | data check "
          "(notes, errors, warnings other than rare/empty/constant) | user had to | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(label_rows()))
    print("\n| image | tagnet decode_image | Pillow convert('RGB') |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        print("\n".join(image_rows(Path(folder))))


if __name__ == "__main__":
    main()
