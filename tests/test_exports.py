"""Labelling tools' exports (CVAT, Label Studio, spaCy, Hugging Face, Roboflow COCO): fixtures written the way each tool writes them."""

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from tagnet.data.check import check_dataset
from tagnet.report.data_check import render_report
from tagnet.data.formats.labelstudio import label_studio_item
from tagnet.data.labels import FORMATS, read_labels, read_labels_with_texts, write_labels
from tagnet.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def sets(table):
    return dict(zip(table.items, table.label_sets()))


def test_cvat_for_images_xml():
    table = read_labels(FIXTURES / "cvat_for_images_1.1.xml")
    assert table.source_format == "cvat" and "cvat" in FORMATS
    assert table.label_names == ["bird", "cat", "dog", "indoor"]  # bird is declared in <meta> though unused
    assert sets(table) == {"pets/a.jpg": ["cat", "indoor"], "pets/b.jpg": ["cat", "dog"], "pets/c.jpg": [],
                           "pets/d.jpg": ["indoor"]}
    assert table.known.all()


def test_cvat_errors_name_the_image(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text('<annotations><meta><task><labels><label><name>cat</name></label></labels></task></meta>'
                    '<image id="4" name="x.jpg"><box label="dog" xtl="0" ytl="0" xbr="1" ybr="1"/></image></annotations>')
    with pytest.raises(DataError, match=r"label\(s\) \['dog'\] are used but not declared"):
        read_labels(path)
    path.write_text('<annotations><image id="4" name="x.jpg"><box xtl="0"/></image></annotations>')
    with pytest.raises(DataError, match=r"a\.xml image id 4: <box> has no label"):
        read_labels(path)


def test_label_studio_json_images():
    table = read_labels(FIXTURES / "label_studio_images.json")
    assert table.source_format == "labelstudio"
    assert sets(table) == {"photo.jpg": ["cat", "indoor"], "dog park.png": ["dog", "night", "outdoor"],
                           "farm/sheep.jpg": ["outdoor"]}
    assert table.meta["notes"] == ["1 task(s) without a completed annotation were left out "
                                   "(first: label_studio_images.json task 104)"]


@pytest.mark.parametrize("value, item", [
    ("/data/upload/3/0a1b2c3d-photo.jpg", "photo.jpg"),
    ("/data/upload/3/abc123-photo.jpg", "photo.jpg"),
    ("http://localhost:8080/data/upload/12/deadbeef-IMG_01.JPG", "IMG_01.JPG"),
    ("/data/local-files/?d=images/sub/a%20b.jpg", "images/sub/a b.jpg"),
    ("s3://bucket/x.jpg", "s3://bucket/x.jpg"),
    ("plain.jpg", "plain.jpg"),
])
def test_label_studio_image_paths(value, item):
    assert label_studio_item(value) == item


def test_label_studio_text_task_and_texts():
    path = FIXTURES / "label_studio_text_task.json"
    table, texts = read_labels_with_texts(path, "text")
    assert texts == ["The parcel arrived two weeks late."] and table.items == texts
    assert table.label_sets() == [["complaint", "product", "shipping"]]  # choices (multiple) and span labels


def test_label_studio_merges_annotations_and_checks_results(tmp_path):
    task = {"id": 1, "data": {"image": "a.jpg"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["x"]}}]},
        {"result": [{"type": "choices", "value": {"choices": ["y"]}}]}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps([task]))
    table = read_labels(path)
    assert sets(table) == {"a.jpg": ["x", "y"]}
    assert table.meta["notes"] == ["1 task(s) have several annotations; their labels were merged"]
    task["annotations"][0]["result"][0]["value"]["choices"] = "x"
    path.write_text(json.dumps([task]))
    with pytest.raises(DataError, match=r"t\.json task 1 annotation 0: value\.choices must be a list"):
        read_labels(path)


def test_label_studio_csv():
    table = read_labels(FIXTURES / "label_studio_export.csv")
    assert table.source_format == "labelstudio-csv"
    assert sets(table) == {"photo.jpg": ["indoor"], "street.png": ["night", "outdoor"], "farm/sheep.jpg": ["outdoor"]}
    assert table.meta["labels_column"] == "scene"


def test_label_studio_csv_text(tmp_path):
    path = tmp_path / "ls.csv"
    path.write_text('text,id,sentiment,annotator,annotation_id,created_at,updated_at,lead_time\n'
                    'great stuff,1,Positive,1,1,2024-01-01,2024-01-01,1.5\n'
                    'meh,2,"{""choices"": [""Neutral"", ""Negative""]}",1,2,2024-01-01,2024-01-01,2.0\n')
    table, texts = read_labels_with_texts(path, "text")
    assert texts == ["great stuff", "meh"] and table.items == texts
    assert table.label_sets() == [["Positive"], ["Negative", "Neutral"]]


def test_spacy_jsonl_positive_negative_unknown():
    table, texts = read_labels_with_texts(FIXTURES / "spacy_textcat.jsonl", "text")
    assert table.source_format == "spacy" and table.label_names == ["complaint", "praise", "shipping"]
    assert texts[1] == "Lovely service, thank you!"
    assert table.targets.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert table.known.tolist() == [[True] * 3, [True] * 3, [True, False, True]]  # "praise" is not listed on row 3


def test_spacy_round_trip_and_bad_score(tmp_path):
    table = read_labels(FIXTURES / "spacy_textcat.jsonl")
    again = read_labels(write_labels(table, tmp_path / "s.jsonl"))
    assert again.source_format == "spacy" and again.items == table.items
    assert (again.targets == table.targets).all() and (again.known == table.known).all()
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "x", "cats": {"a": "yes"}}\n')
    with pytest.raises(DataError, match=r"b\.jsonl line 1: cats\['a'\] is 'yes'; expected a score"):
        read_labels(bad)


def test_hugging_face_save_to_disk_class_labels():
    table = read_labels(FIXTURES / "hf_scene_save_to_disk")
    assert table.source_format == "huggingface"
    assert table.label_names == ["desert", "mountains", "sea", "sunset", "trees"]  # every ClassLabel name
    assert sets(table) == {"1.jpg": ["desert", "mountains"], "2.jpg": ["sea"], "3.jpg": []}


def test_hugging_face_parquet_string_lists_with_text(tmp_path):
    table, texts = read_labels_with_texts(FIXTURES / "hf_text_tags.parquet", "text")
    assert texts == ["so happy today", "this is awful", "ok I guess"]
    assert table.label_sets() == [["joy"], ["anger", "disgust"], []]
    split = read_labels_with_texts(write_labels(table, tmp_path / "part.jsonl"), "text")  # a split keeps the text
    assert split[1] == texts and split[0].label_sets() == table.label_sets()


def test_hugging_face_dataset_dict_names_its_splits(tmp_path):
    folder = tmp_path / "dd"
    shutil.copytree(FIXTURES / "hf_scene_save_to_disk", folder / "train")
    (folder / "dataset_dict.json").write_text('{"splits": ["train"]}')
    with pytest.raises(DataError, match=r"is a DatasetDict with splits \['train'\]; give one split's folder"):
        read_labels(folder)


def test_roboflow_project_category_dropped_with_a_note():
    path = FIXTURES / "roboflow_coco" / "_annotations.coco.json"
    table = read_labels(path)
    assert table.label_names == ["apple", "banana", "orange"]
    assert table.label_sets() == [["apple", "banana"], ["orange"], []]
    report = check_dataset(path)
    assert any("fruit-kvxyz" in note for note in report.notes)
    out = io.StringIO()
    render_report(report, Console(file=out, width=200))
    assert "Roboflow project's name" in out.getvalue()


def test_plain_coco_keeps_an_unused_category(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "category_id": 2}],
            "categories": [{"id": 1, "name": "person", "supercategory": "none"}, {"id": 2, "name": "car", "supercategory": "vehicle"}]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    table = read_labels(path)
    assert table.label_names == ["car", "person"] and "notes" not in table.meta


@pytest.mark.parametrize("name", ["cvat_for_images_1.1.xml", "label_studio_images.json", "label_studio_export.csv",
                                  "hf_scene_save_to_disk"])
def test_image_exports_write_back_as_tags(tmp_path, name):
    table = read_labels(FIXTURES / name)
    again = read_labels(write_labels(table, tmp_path / "part.csv"))
    assert again.source_format == "tags" and sets(again) == sets(table)


def test_xml_that_is_not_cvat_is_refused(tmp_path):
    path = tmp_path / "one.xml"
    path.write_text("<annotation><filename>a.jpg</filename></annotation>")
    with pytest.raises(DataError, match=r"one\.xml: an XML file whose root is not CVAT's <annotations>; Pascal VOC"):
        read_labels(path)
