"""The label-format registry: detection with scores, one reading per file, every layout's fixture, refusals of
readings that disagree, the same reading in train and data check, and write/read round trips (hypothesis)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tagnet.cli import app
from tagnet.config.source import DataSource
from tagnet.data.check import check_dataset
from tagnet.data.feature_table import read_feature_table
from tagnet.data.formats import REGISTRY, describe, resolve
from tagnet.data.formats.source import FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.data.labels import read_labels, read_labels_with_texts, write_labels
from tagnet.errors import DataError
from tagnet.modalities import get as get_modality

FIXTURES = Path(__file__).parent / "fixtures"
# (fixture, format it is, the first items as read)
LAYOUTS = [
    ("cvat_for_images_1.1.xml", "cvat", None),
    ("label_studio_images.json", "labelstudio", None),
    ("label_studio_text_task.json", "labelstudio", None),
    ("label_studio_export.csv", "labelstudio-csv", None),
    ("spacy_textcat.jsonl", "spacy", None),
    ("hf_scene_save_to_disk", "huggingface", None),
    ("hf_text_tags.parquet", "huggingface", None),
    ("roboflow_coco/_annotations.coco.json", "coco", None),
    ("pandas_to_csv_index.csv", "tags", {"a.jpg": ["cat", "dog"], "b.jpg": ["dog"]}),
    ("kaggle_onehot_class_id.csv", "onehot", {"train_0": ["rust"], "train_1": ["multiple_diseases", "rust"]}),
    ("pandas_fold_onehot_label.csv", "onehot", {"Train_0": ["scab"], "Train_1": ["multiple_diseases"]}),
    ("arxiv_terms_list_literal.csv", "tags", {"Attention Is All You Need Again": ["cs.CL", "cs.LG"],
                                              "Vision Transformers for Dense Prediction": ["cs.CV"]}),
    ("openimages_boxes.csv", "long", {"000002b66c9c498e": ["/m/01g317", "/m/0284d"], "000002b97e5471a0": ["/m/05s2s"]}),
    ("long_annotations.jsonl", "long", {"a.jpg": ["cat", "dog"], "b.jpg": ["dog"], "c.jpg": ["bird"]}),
    ("yolo_darknet", "yolo", {"obj/frame_000001.jpg": ["dog", "person"], "obj/frame_000002.jpg": ["car"],
                              "obj/frame_000003.jpg": []}),
    ("yolo_ultralytics", "yolo", {"images/train/img1.jpg": ["cat", "dog"], "images/val/img3.jpg": ["dog"]}),
    ("groundtruth_classification.manifest", "groundtruth", {"img_001.jpg": ["dog"], "img_002.jpg": ["cat"]}),
    ("groundtruth_multilabel.manifest", "groundtruth", {"beach.jpg": ["sea", "sunset"], "hills.jpg": ["mountains"],
                                                        "night.jpg": []}),
    ("groundtruth_detection.manifest", "groundtruth", {"0001.jpg": ["bicycle", "person"], "0002.jpg": ["bicycle"]}),
    ("labelbox_export_v2.ndjson", "labelbox", {"beach.jpg": ["day", "dog", "sunny", "windy"],
                                               "street.jpg": ["car", "dog", "night"], "empty.jpg": []}),
    ("darwin_json_2.0", "darwin", {"sheep.jpg": ["outdoor", "sheep"], "buildings/barn.jpg": ["building", "outdoor"],
                                   "empty.jpg": []}),
    ("prodigy_textcat.jsonl", "prodigy", {"Where is my order?": ["COMPLAINT", "SHIPPING"]}),
    ("celeba_list_attr.txt", "celeba", {"000001.jpg": ["Arched_Eyebrows", "Smiling"], "000004.jpg": []}),
]


def sets(table: LabelTable) -> dict[str, list[str]]:
    return dict(zip(table.items, table.label_sets()))


@pytest.mark.parametrize("name, fmt, expected", LAYOUTS, ids=[row[0] for row in LAYOUTS])
def test_every_fixture_is_read_as_its_format_and_never_as_another(name, fmt, expected):
    fits, _ = resolve.detect(Source(FIXTURES / name))
    assert fits[0].format == fmt and fits[0].score >= 0.5
    assert all(f.score < fits[0].score for f in fits[1:]), [(f.format, f.score) for f in fits]
    table = read_labels(FIXTURES / name)
    assert table.source_format == fmt
    if expected is not None:
        assert {item: sets(table)[item] for item in expected} == expected


@pytest.mark.parametrize("name", [row[0] for row in LAYOUTS])
def test_train_and_data_check_read_the_same(name):
    """data check and the training reader (the modality's read, as tagnet train calls it) agree on every fixture."""
    report = check_dataset(FIXTURES / name, min_examples=1)
    data = get_modality("image").read(DataSource(FIXTURES / name))
    assert report.usable or report.problems[0].kind != "read"
    assert (report.format, report.items, report.labels) == (data.table.source_format, len(data.table),
                                                            data.table.label_names)
    assert report.samples == [{"item": i, "labels": s} for i, s in zip(data.table.items[:3], data.table.label_sets()[:3])]
    assert report.reading["format"] == data.table.source_format


def test_yolo_folder_train_and_check_agree_from_the_command_line(tmp_path):
    shutil.copytree(FIXTURES / "yolo_darknet", tmp_path / "yolo")
    result = CliRunner().invoke(app, ["data", "check", str(tmp_path / "yolo"), "--min-examples", "1",
                                      "--json", str(tmp_path / "check.json")])
    found = json.loads((tmp_path / "check.json").read_text())
    assert result.exit_code == 0 and "Read as yolo" in result.output and "obj/frame_000001.jpg -> dog, person" in result.output
    assert found["reading"]["format"] == "yolo" and found["runner_up"]["format"] == "folders"
    assert found["samples"][0] == {"item": "obj/frame_000001.jpg", "labels": ["dog", "person"]}
    assert found["images_checked"] == 3 and found["labels"] == ["car", "dog", "person"]
    data = get_modality("image").read(DataSource(tmp_path / "yolo"))  # what `tagnet train` reads
    assert [str(p) for p in data.inputs] == [str(tmp_path / "yolo" / s["item"]) for s in found["samples"]]


# ---- readings that both fit --------------------------------------------------------------------
def test_class_id_that_agrees_with_the_onehot_columns_is_noted(tmp_path):
    table = read_labels(FIXTURES / "pandas_fold_onehot_label.csv")
    assert table.label_names == ["healthy", "multiple_diseases", "rust", "scab"]
    assert any("the tags reading (column 'label' by its name) says the same as the onehot reading" in n
               for n in table.meta["notes"])
    for order in ("label,image_id,healthy,rust", "image_id,healthy,label,rust", "healthy,rust,image_id,label"):
        columns = order.split(",")
        rows = [{"image_id": f"i{k}", "healthy": int(k % 2 == 0), "rust": int(k % 2 == 1), "label": k % 2}
                for k in range(6)]
        path = tmp_path / "fold.csv"
        path.write_text(",".join(columns) + "\n" + "".join(",".join(str(r[c]) for c in columns) + "\n" for r in rows))
        assert sets(read_labels(path)) == {f"i{k}": [["healthy", "rust"][k % 2]] for k in range(6)}


def test_readings_that_disagree_are_refused_naming_both_options(tmp_path):
    path = tmp_path / "fold.csv"
    path.write_text(",image_id,healthy,rust,scab,label\n0,a,1,0,0,0\n1,b,0,1,0,0\n2,c,0,0,1,2\n")
    with pytest.raises(DataError, match=r"two readings fit and disagree: onehot .*pick it with --label-columns "
                                        r"healthy,rust,scab.* and tags .*pick it with --labels-column label.*'b'"):
        read_labels(path)
    assert sets(read_labels(path, labels_column="label")) == {"a": ["0"], "b": ["0"], "c": ["2"]}
    assert sets(read_labels(path, label_columns=["healthy", "rust", "scab"]))["b"] == ["rust"]
    tags = tmp_path / "tags.csv"
    tags.write_text("image,labels,cat,dog\na,cat,1,0\nb,dog,1,0\n")
    report = check_dataset(tags)
    assert not report.usable and "--labels-column labels" in report.problems[0].message
    assert "--label-columns cat,dog" in report.problems[0].message


def test_repeated_ids_with_one_label_a_row_are_grouped(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("ImageID,XMin,ClassName\nx,0.1,Human face\nx,0.5,Dog\ny,0.2,Dog\n")
    table = read_labels(path)
    assert table.source_format == "long" and sets(table) == {"x": ["Dog", "Human face"], "y": ["Dog"]}
    assert "3 rows, 2 distinct ids: one row per annotation, grouped by id (ImageID)" in table.meta["notes"]
    given = read_labels(path, id_column="ImageID", labels_column="ClassName")
    assert given.items == ["x", "y"]
    single = tmp_path / "one_box_each.csv"  # no id repeats: one row per item, the class column read whole
    single.write_text("ImageID,ClassName\nx,Human face\ny,Dog\n")
    assert sets(read_labels(single)) == {"x": ["Human face"], "y": ["Dog"]}
    parts = tmp_path / "parts"
    write_labels(read_labels(path), parts / "rows.csv")
    assert sets(read_labels(parts / "rows.csv")) == {"x": ["Dog", "Human face"], "y": ["Dog"]}
    report = check_dataset(path, min_examples=1)
    assert report.usable and report.items == 2 and not [p for p in report.problems if p.kind == "duplicate id"]
    verified = tmp_path / "image_labels.csv"  # Open Images human-verified image labels: Confidence 0 = absent
    verified.write_text("ImageID,Source,LabelName,Confidence\nx,verification,/m/dog,1\nx,verification,/m/cat,0\n"
                        "y,verification,/m/cat,1\ny,crowdsource-verification,/m/dog,0\nz,verification,/m/dog,0\n")
    table = read_labels(verified)
    assert sets(table) == {"x": ["/m/dog"], "y": ["/m/cat"], "z": []}
    assert "3 row(s) with Confidence 0 say the label is absent: not read as labels" in table.meta["notes"]


def test_label_studio_csv_data_fields_are_never_labels(tmp_path):
    with pytest.raises(DataError, match=r"no annotation column in this Label Studio CSV.*\(caption, source\)"):
        read_labels(FIXTURES / "label_studio_no_annotation.csv")
    plain = tmp_path / "ls.csv"
    plain.write_text("image,id,sentiment,annotator,annotation_id,created_at,updated_at,lead_time\n"
                     + "".join(f"/data/upload/1/ab12-{k}.jpg,{k},{['good', 'bad'][k % 2]},1,{k},t,t,1.0\n" for k in range(4)))
    table = read_labels(plain)
    assert sets(table) == {f"{k}.jpg": [["good", "bad"][k % 2]] for k in range(4)}
    assert "column 'sentiment' holds plain single choices" in table.meta["notes"][0]


@pytest.mark.parametrize("cell, labels", [
    ("\"['cs.CV', 'cs.LG']\"", ["cs.CV", "cs.LG"]), ('"[""cs.CV"", ""cs.LG""]"', ["cs.CV", "cs.LG"]),
    ('"[cs.CV, cs.LG]"', ["cs.CV", "cs.LG"]), ("[]", []), ("\"['stat.ML']\"", ["stat.ML"])])
def test_list_literal_cells(tmp_path, cell, labels):
    path = tmp_path / "papers.csv"
    path.write_text(f"id,terms\np1,{cell}\np2,\"['cs.AI']\"\n")
    table = read_labels(path)
    assert sets(table) == {"p1": labels, "p2": ["cs.AI"]} and table.meta["separator"] == "list"
    texts = read_labels_with_texts(FIXTURES / "arxiv_terms_list_literal.csv", "summaries")
    assert texts[0].num_labels == 4 and texts[1][1] == "Dense prediction with transformers."


# ---- what each tool's answers mean ---------------------------------------------------------------
def test_prodigy_accept_reject_ignore():
    table, texts = read_labels_with_texts(FIXTURES / "prodigy_textcat.jsonl", "text")
    assert table.label_names == ["COMPLAINT", "PRAISE", "SHIPPING"] and texts == table.items
    row = {item: (t.tolist(), k.tolist()) for item, t, k in zip(table.items, table.targets, table.known)}
    assert row["The parcel arrived two weeks late."] == ([0, 0, 1], [False, True, True])  # PRAISE rejected: known 0
    assert row["Lovely service, thank you!"] == ([0, 1, 0], [False, True, False])  # SHIPPING ignored: unknown
    assert row["Where is my order?"] == ([1, 0, 1], [True, True, True])  # choice: options not accepted are 0


def test_celeba_minus_one_is_a_known_negative():
    table = read_labels(FIXTURES / "celeba_list_attr.txt")
    assert table.known.all() and table.targets[3].sum() == 0
    assert table.label_names[0] == "5_o_Clock_Shadow" and table.meta["count_line"] is True


def test_mulan_names_that_differ_only_in_escaping_are_read_by_position(tmp_path):
    found = read_feature_table(FIXTURES / "mulan_escapes.arff")
    assert found.labels.label_names == ["cafÃ©", "colour", "dise~no"] and found.feature_names == ["f1", "f2"]
    note = found.labels.meta["notes"][-1]
    assert "'dise~no' (XML 'dise?o')" in note and "'cafÃ©' (XML 'café')" in note and "by position" in note
    shutil.copy(FIXTURES / "mulan_escapes.arff", tmp_path / "m.arff")
    (tmp_path / "m.xml").write_text('<labels><label name="colour"/><label name="size"/><label name="shape"/></labels>')
    with pytest.raises(DataError, match="give --label-count 3"):
        read_feature_table(tmp_path / "m.arff")


# ---- the registry ---------------------------------------------------------------------------------
def test_every_format_module_declares_the_same_interface_and_help_lists_them():
    for name, module in REGISTRY.items():
        assert module.NAME == module.INFO.name == name and module.INFO.layout in ("file", "folder", "either")
        assert isinstance(module.INFO, FormatInfo) and module.INFO.summary
        assert callable(module.detect) and callable(module.read)
    result = CliRunner().invoke(app, ["data", "check", "--help"], terminal_width=400)
    flat = " ".join(result.output.replace("│", " ").split())
    assert all(name in flat for name in REGISTRY) and describe().startswith("tags (")


# ---- round trips -----------------------------------------------------------------------------------
WORD = st.text("abcdefghij", min_size=1, max_size=5)


@st.composite
def label_tables(draw, unknown: bool) -> LabelTable:
    names = sorted(draw(st.sets(WORD, min_size=1, max_size=5)))
    items = [f"x{k}_{w}.jpg" for k, w in enumerate(draw(st.lists(WORD, min_size=1, max_size=8)))]
    targets = np.array(draw(st.lists(st.lists(st.integers(0, 1), min_size=len(names), max_size=len(names)),
                                     min_size=len(items), max_size=len(items))), dtype=np.uint8)
    known = np.ones_like(targets, dtype=bool)
    if unknown:
        known = np.array(draw(st.lists(st.lists(st.booleans(), min_size=len(names), max_size=len(names)),
                                       min_size=len(items), max_size=len(items))), dtype=bool)
        known[0] = True  # every label has a known value and every item one answer
        known[:, 0] = True
        targets &= known
    return LabelTable(items, names, targets, known)


SUFFIX = {"tags": "labels.csv", "onehot": "labels.csv", "jsonl": "labels.jsonl", "json": "labels.json",
          "spacy": "cats.jsonl", "long": "rows.csv", "celeba": "list_attr.txt", "prodigy": "answers.jsonl"}
WRITABLE = [name for name, module in REGISTRY.items() if hasattr(module, "write")]


def test_every_writable_format_has_a_round_trip():
    assert sorted(WRITABLE) == sorted(SUFFIX)


@pytest.mark.parametrize("fmt", WRITABLE)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_written_tables_read_back_the_same(tmp_path, fmt, data):
    table = data.draw(label_tables(unknown=getattr(REGISTRY[fmt], "WRITES_UNKNOWN", False)))
    path = write_labels(table, tmp_path / SUFFIX[fmt], format=fmt)
    back = read_labels(path)  # detected, no option given
    order = [back.items.index(item) for item in table.items]
    names = [n for n in table.label_names if table.known[:, table.label_names.index(n)].any()
             or fmt not in ("spacy", "prodigy")]
    kept = back.aligned_to(names) if fmt in ("spacy", "prodigy") else back
    assert sorted(back.items) == sorted(table.items)
    if fmt in ("tags", "jsonl", "json", "long"):  # the label set is the labels used
        names = sorted({n for s in table.label_sets() for n in s})
        kept = back
    expected = table.aligned_to(table.label_names).targets[:, [table.label_names.index(n) for n in names]]
    assert kept.label_names == names
    np.testing.assert_array_equal(kept.targets[order], expected)
    known = table.known[:, [table.label_names.index(n) for n in names]]
    np.testing.assert_array_equal(kept.known[order], known)


def test_roboflow_yolov5_export_with_a_readme(tmp_path):
    root = tmp_path / "export"
    for split in ("train", "valid"):
        shutil.copytree(FIXTURES / "yolo_ultralytics" / "images" / "train", root / split / "images")
        shutil.copytree(FIXTURES / "yolo_ultralytics" / "labels" / "train", root / split / "labels")
    (root / "README.roboflow.txt").write_text("\nScenes - v2 2024-01-02\n==============================\nThis dataset was exported via roboflow.com\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\n\nnc: 3\nnames: ['cat', 'dog', 'bird']\n")
    table = read_labels(root)
    assert table.source_format == "yolo" and len(table) == 4
    assert sets(table)["train/images/img1.jpg"] == ["cat", "dog"] and sets(table)["valid/images/img2.jpg"] == ["bird"]
    assert "1 .txt file(s) have no image" in table.meta["notes"][0]


def test_groundtruth_line_without_a_label_is_left_out_with_a_note(tmp_path):
    lines = (FIXTURES / "groundtruth_classification.manifest").read_text().splitlines()
    failed = {"source-ref": "s3://my-bucket/pets/img_003.jpg",
              "pets-metadata": {"failure-reason": "ClientError: annotation timed out", "job-name": "labeling-job/pets"}}
    path = tmp_path / "output.manifest"
    path.write_text("\n".join([*lines, json.dumps(failed)]) + "\n")
    table = read_labels(path)
    assert table.items == ["img_001.jpg", "img_002.jpg"]
    assert any("1 line(s) have no label" in note for note in table.meta["notes"])


def test_attribute_csv_with_minus_one_for_absent(tmp_path):
    path = tmp_path / "list_attr_celeba.csv"  # the CSV version of CelebA's attributes (Kaggle): -1/1, never 0
    path.write_text("image_id,Bald,Eyeglasses,Smiling\n000001.jpg,-1,-1,1\n000002.jpg,1,-1,-1\n")
    table = read_labels(path)
    assert table.known.all() and sets(table) == {"000001.jpg": ["Smiling"], "000002.jpg": ["Bald"]}
    assert "-1 read as absent" in table.meta["notes"][0]


def test_a_detection_folder_without_class_names_is_refused_not_read_as_folders(tmp_path):
    shutil.copytree(FIXTURES / "yolo_darknet", tmp_path / "export", ignore=shutil.ignore_patterns("obj.names"))
    with pytest.raises(DataError, match=r"3 annotation file\(s\) such as frame_000001\.txt sit beside images.*no label "
                                        r"format reads it well \(the closest: folders"):
        read_labels(tmp_path / "export")
    assert sets(read_labels(tmp_path / "export", format="folders"))["obj/frame_000001.jpg"] == ["obj"]
