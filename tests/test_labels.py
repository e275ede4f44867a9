"""Label file readers and writers: every format, detection, overrides and malformed files."""

import json
from pathlib import Path

import numpy as np
import pytest

from tagnet.data.labels import read_labels, read_labels_located, write_labels
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sets(table: LabelTable) -> dict[str, list[str]]:
    return dict(zip(table.items, table.label_sets()))


# ---- tags CSV/TSV -------------------------------------------------------------------------
@pytest.mark.parametrize("text, separator", [
    ("image,labels\na.jpg,cat dog\nb.jpg,dog\nc.jpg,\n", " "),
    ('image,labels\na.jpg,"cat,dog"\nb.jpg,dog\nc.jpg,\n', ","),
    ("image,labels\na.jpg,cat;dog\nb.jpg,dog\nc.jpg,\n", ";"),
    ("image,labels\na.jpg,cat|dog\nb.jpg,dog\nc.jpg,\n", "|"),
    ("image\tlabels\na.jpg\tcat, dog\nb.jpg\tdog\nc.jpg\t\n", ","),
])
def test_tags_separator_detected(tmp_path, text, separator):
    table = read_labels(write(tmp_path / "labels.csv", text))
    assert table.source_format == "tags"
    assert table.label_names == ["cat", "dog"]
    assert sets(table) == {"a.jpg": ["cat", "dog"], "b.jpg": ["dog"], "c.jpg": []}
    assert table.targets.tolist() == [[1, 1], [0, 1], [0, 0]]
    assert table.known.all()
    assert table.meta["separator"] == separator


def test_tsv_suffix_semicolon_delimiter_and_multiword_labels(tmp_path):
    tsv = read_labels(write(tmp_path / "l.tsv", "file\ttags\nx.png\tliving room,kitchen\n"))
    assert tsv.meta["delimiter"] == "\t" and sets(tsv) == {"x.png": ["kitchen", "living room"]}
    semi = read_labels(write(tmp_path / "l.csv", "id;categories\n1;a b\n2;b\n"))
    assert semi.meta["delimiter"] == ";" and sets(semi) == {"1": ["a", "b"], "2": ["b"]}
    assert semi.meta["id_column"] == "id" and semi.meta["labels_column"] == "categories"


def test_tags_columns_detected_by_name_and_overridden(tmp_path):
    path = write(tmp_path / "l.csv", "note,Tags,Path\nhello,cat,a.jpg\nbye,dog cat,b.jpg\n")
    table = read_labels(path)
    assert table.items == ["a.jpg", "b.jpg"] and table.label_sets() == [["cat"], ["cat", "dog"]]
    assert read_labels(path, id_column="note", labels_column="Tags").items == ["hello", "bye"]
    assert read_labels(path, separator="comma").label_sets() == [["cat"], ["dog cat"]]


def test_tags_fallback_to_first_two_columns(tmp_path):
    table = read_labels(write(tmp_path / "l.csv", "name,classes\nx,a b\ny,b\n"))
    assert table.items == ["x", "y"] and table.label_names == ["a", "b"]


def test_unknown_column_override_lists_columns(tmp_path):
    path = write(tmp_path / "l.csv", "image,labels\na.jpg,cat\n")
    with pytest.raises(DataError, match=r"no column 'foo'.*available columns: image, labels"):
        read_labels(path, labels_column="foo")
    with pytest.raises(DataError, match="available columns: image, labels"):
        read_labels(path, id_column="name")


def test_bad_quoting_names_the_line(tmp_path):
    path = write(tmp_path / "l.csv", 'image,labels\na.jpg,cat\nb.jpg,"dog" cat\n')
    with pytest.raises(DataError, match=r"l\.csv line 3: malformed CSV"):
        read_labels(path)
    with pytest.raises(DataError, match="malformed CSV"):
        read_labels(write(tmp_path / "u.csv", 'image,labels\na.jpg,"cat\nb.jpg,dog\n'))


def test_unquoted_extra_fields_and_missing_columns(tmp_path):
    with pytest.raises(DataError, match=r"line 3: 3 fields but the header has 2.*quote"):
        read_labels(write(tmp_path / "l.csv", "image,labels\na.jpg,cat\nb.jpg,cat,dog\n"))
    with pytest.raises(DataError, match=r"line 2: 1 fields but the header has 2"):
        read_labels(write(tmp_path / "m.csv", "image,labels\na.jpg\n"))
    with pytest.raises(DataError, match="no labels column; available columns: image"):
        read_labels(write(tmp_path / "one.csv", "image\na.jpg\n"))
    with pytest.raises(DataError, match="is empty"):
        read_labels(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataError, match="line 3: the item id is empty"):
        read_labels(write(tmp_path / "noid.csv", "image,labels\na.jpg,cat\n ,dog\n"))


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_labels(tmp_path / "nope.csv")
    path = write(tmp_path / "l.csv", "image,labels\na.jpg,cat\n")
    with pytest.raises(DataError, match="unknown label format 'xml'"):
        read_labels(path, format="xml")
    with pytest.raises(DataError, match="cannot be read as format 'voc'"):
        read_labels(path, format="voc")


def test_duplicate_ids_with_several_tags_a_row_are_kept(tmp_path):
    table, where = read_labels_located(write(tmp_path / "l.csv", "image,labels\na,x z\nb,y\na,y\n"))
    assert table.items == ["a", "b", "a"]
    assert where == ["l.csv line 2", "l.csv line 3", "l.csv line 4"]


def test_repeated_ids_with_one_tag_a_row_are_grouped(tmp_path):
    table = read_labels(write(tmp_path / "l.csv", "image,labels\na,x\nb,y\na,y\n"))
    assert table.source_format == "long" and table.items == ["a", "b"]
    assert table.label_sets() == [["x", "y"], ["y"]]


# ---- one-hot CSV --------------------------------------------------------------------------
def test_onehot_values_and_unknown_cells(tmp_path):
    path = write(tmp_path / "oh.csv", "image,sea,desert,trees\na.jpg,1,0,\nb.jpg,0,-1,1\nc.jpg,0,0,0\n")
    table = read_labels(path)
    assert table.source_format == "onehot"
    assert table.label_names == ["desert", "sea", "trees"]
    assert table.targets.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert table.known.tolist() == [[True, True, False], [False, True, True], [True, True, True]]
    assert table.label_counts().tolist() == [0, 1, 1]


def test_onehot_bad_value_names_line_and_column(tmp_path):
    path = write(tmp_path / "oh.csv", "image,sea,desert\na.jpg,1,0\nb.jpg,yes,0\n")
    with pytest.raises(DataError, match=r"oh\.csv line 3, column 'sea': value 'yes' is not 0 or 1"):
        read_labels(path)


def test_onehot_label_columns_override_and_two_column_detection(tmp_path):
    path = write(tmp_path / "oh.csv", "image,width,cat,dog\na,640,1,0\nb,320,1,1\n")
    table = read_labels(path, label_columns=["dog", "cat"])
    assert table.label_names == ["cat", "dog"] and table.targets.tolist() == [[1, 0], [1, 1]]
    auto = read_labels(path)  # a column of other integers (a size, a class id) is not read as labels, with a note
    assert auto.label_names == ["cat", "dog"] and "column(s) 'width' hold values other than 0/1" in auto.meta["notes"][0]
    single = read_labels(write(tmp_path / "one.csv", "image,cat\na,1\nb,0\n"))
    assert single.source_format == "onehot" and single.label_names == ["cat"]


def test_miml_scene_tags_and_onehot_give_the_same_table(shared_data):
    tags = read_labels(shared_data / "miml-scene" / "labels.csv")
    onehot = read_labels(shared_data / "miml-scene" / "labels_onehot.csv")
    assert (tags.source_format, onehot.source_format) == ("tags", "onehot")
    assert len(tags) == 1600 and tags.items == onehot.items
    assert tags.label_names == onehot.label_names == ["desert", "mountains", "sea", "sunset", "trees"]
    np.testing.assert_array_equal(tags.targets, onehot.targets)
    np.testing.assert_array_equal(tags.known, onehot.known)
    assert abs(tags.targets.sum() / len(tags) - 1.24) < 0.01


# ---- label names files (GoEmotions layout) --------------------------------------------------
def test_headerless_tsv_with_index_labels(tmp_path):
    names = write(tmp_path / "labels.txt", "anger\njoy\nneutral\n\n")
    path = write(tmp_path / "train.tsv", "I am happy\t1\tc1\nGrr, fine.\t0,2\tc2\nok\t2\tc3\n")
    table = read_labels(path, no_header=True, label_names_file=names)
    assert table.items == ["I am happy", "Grr, fine.", "ok"]
    assert table.label_names == ["anger", "joy", "neutral"]
    assert table.label_sets() == [["joy"], ["anger", "neutral"], ["neutral"]]
    assert read_labels(path, no_header=True, label_names_file=names, id_column=2).items == ["c1", "c2", "c3"]
    with pytest.raises(DataError, match=r"line 1: label index '7' is not in 0\.\.2"):
        read_labels(write(tmp_path / "bad.tsv", "x\t7\tc\n"), no_header=True, label_names_file=names)
    with pytest.raises(DataError, match="numbered from 0"):
        read_labels(path, no_header=True, label_names_file=names, id_column="text")


def test_label_names_file_fixes_the_label_set(tmp_path):
    names = write(tmp_path / "names.txt", "cat\ndog\nemu\n")
    path = write(tmp_path / "l.csv", "image,labels\na,cat\nb,dog cat\n")
    table = read_labels(path, label_names_file=names)
    assert table.label_names == ["cat", "dog", "emu"] and table.label_counts().tolist() == [2, 1, 0]
    with pytest.raises(DataError, match=r"line 2: label 'cow' is not in"):
        read_labels(write(tmp_path / "c.csv", "image,labels\na,cow\n"), label_names_file=names)
    with pytest.raises(DataError, match="needs label_names_file"):
        read_labels(path, labels_are_indices=True)


def test_min_count_drops_rare_labels(tmp_path):
    table = read_labels(write(tmp_path / "l.csv", "image,labels\na,x y\nb,x\nc,x z\n"), min_count=2)
    assert table.label_names == ["x"] and table.targets.tolist() == [[1], [1], [1]]


# ---- JSON ---------------------------------------------------------------------------------
def test_jsonl_and_json_records(tmp_path):
    jl = write(tmp_path / "l.jsonl",
               '{"image": "a.jpg", "labels": ["cat", "dog"]}\n\n{"image": "b.jpg", "labels": []}\n')
    table = read_labels(jl)
    assert table.source_format == "jsonl" and sets(table) == {"a.jpg": ["cat", "dog"], "b.jpg": []}
    records = [{"file": "x.png", "tags": ["sea"]}, {"file": "y.png", "tags": ["sea", "sky"]}]
    js = read_labels(write(tmp_path / "l.json", json.dumps(records)))
    assert js.source_format == "json" and sets(js) == {"x.png": ["sea"], "y.png": ["sea", "sky"]}
    assert js.meta == {"id_key": "file", "labels_key": "tags"}
    other = write(tmp_path / "o.jsonl", '{"path": "p", "classes": ["a"]}\n')
    assert read_labels(other, labels_column="classes").label_sets() == [["a"]]


def test_malformed_json(tmp_path):
    with pytest.raises(DataError, match=r"l\.jsonl line 2 column \d+: not valid JSON"):
        read_labels(write(tmp_path / "l.jsonl", '{"image": "a", "labels": []}\n{"image": "b", "labels": [}\n'))
    with pytest.raises(DataError, match=r"line 1 column \d+: not valid JSON"):
        read_labels(write(tmp_path / "b.json", '[{"image": "a"'))
    with pytest.raises(DataError, match=r"line 1: no labels key \(one of labels, tags, label, categories\)"):
        read_labels(write(tmp_path / "k.jsonl", '{"image": "a", "objects": []}\n'))
    with pytest.raises(DataError, match="'labels' must be a list"):
        read_labels(write(tmp_path / "s.jsonl", '{"image": "a", "labels": "cat dog"}\n'))
    with pytest.raises(DataError, match="expected a list of records"):
        read_labels(write(tmp_path / "d.json", '{"items": []}'))


# ---- COCO ---------------------------------------------------------------------------------
def coco(**changes) -> dict:
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 5, "file_name": "c.jpg"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "traffic light"}, {"id": 9, "name": "zebra"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 1, "category_id": 1},
                        {"id": 3, "image_id": 5, "category_id": 3}, {"id": 4, "image_id": 1, "category_id": 3}],
    }
    data.update(changes)
    return data


def test_coco_image_level_labels(tmp_path):
    table, where = read_labels_located(write(tmp_path / "instances.json", json.dumps(coco())))
    assert table.source_format == "coco"
    assert table.label_names == ["person", "traffic light", "zebra"]
    assert sets(table) == {"a.jpg": ["person", "traffic light"], "b.jpg": [], "c.jpg": ["traffic light"]}
    assert where[2] == "instances.json image id 5"


def test_coco_bad_references(tmp_path):
    bad_cat = coco(annotations=[{"image_id": 1, "category_id": 4}])
    with pytest.raises(DataError, match=r"annotations\[0\] has category_id 4, expected one of \[1, 3, 9\]"):
        read_labels(write(tmp_path / "a.json", json.dumps(bad_cat)))
    bad_img = coco(annotations=[{"image_id": 8, "category_id": 1}])
    with pytest.raises(DataError, match=r"image_id 8, which is not in images"):
        read_labels(write(tmp_path / "b.json", json.dumps(bad_img)))
    with pytest.raises(DataError, match=r"images\[0\] lacks file_name"):
        read_labels(write(tmp_path / "c.json", json.dumps(coco(images=[{"id": 1}]))))


# ---- Pascal VOC and folders --------------------------------------------------------------------
def voc_xml(filename: str | None, *names: str) -> str:
    objects = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>" for n in names)
    head = f"<filename>{filename}</filename>" if filename else ""
    return f"<annotation>{head}<size><width>4</width><height>4</height></size>{objects}</annotation>"


def test_voc_folder(tmp_path):
    ann = tmp_path / "VOC" / "Annotations"
    write(ann / "0001.xml", voc_xml("0001.jpg", "dog", "person", "dog"))
    write(ann / "0002.xml", voc_xml(None, "cat"))
    write(ann / "0003.xml", voc_xml("0003.jpg"))
    (tmp_path / "VOC" / "JPEGImages").mkdir()
    table, where = read_labels_located(tmp_path / "VOC")
    assert table.source_format == "voc" and table.label_names == ["cat", "dog", "person"]
    assert sets(table) == {"0001.jpg": ["dog", "person"], "0002.jpg": ["cat"], "0003.jpg": []}
    assert where[1].endswith("0002.xml")
    assert table.meta["images_dir"] == str(tmp_path / "VOC" / "JPEGImages")
    assert read_labels(ann).items == table.items


def test_voc_broken_xml_names_the_file(tmp_path):
    write(tmp_path / "ann" / "a.xml", voc_xml("a.jpg", "cat"))
    write(tmp_path / "ann" / "b.xml", "<annotation><object><name>dog</name></annotation>")
    with pytest.raises(DataError, match=r"b\.xml: broken XML"):
        read_labels(tmp_path / "ann")


def test_folder_per_label(tmp_path):
    for rel in ["cat/1.jpg", "cat/2.jpg", "dog/2.jpg", "dog/sub/3.jpg", "emu/.hidden.jpg", ".git/x"]:
        write(tmp_path / "data" / rel, "x")
    table = read_labels(tmp_path / "data")
    assert table.source_format == "folders"
    assert table.label_names == ["cat", "dog", "emu"]
    assert sets(table) == {"cat/1.jpg": ["cat"], "cat/2.jpg": ["cat", "dog"], "dog/sub/3.jpg": ["dog"]}
    assert table.meta["images_dir"] == str(tmp_path / "data")
    with pytest.raises(DataError, match="neither Pascal VOC"):
        read_labels(tmp_path / "data" / "emu")


# ---- writing ------------------------------------------------------------------------------
def test_write_tags_keeps_delimiter_columns_and_separator(tmp_path):
    src = write(tmp_path / "in.csv", "file;tags\na;x|y\nb;y\nc;\n")
    table = read_labels(src)
    out = write_labels(table, tmp_path / "out" / "copy.csv")
    assert out.read_text().splitlines() == ["file;tags", "a;x|y", "b;y", "c;"]
    again = read_labels(out)
    assert again.items == table.items and again.label_sets() == table.label_sets()


def test_write_onehot_keeps_unknown_cells(tmp_path):
    table = read_labels(write(tmp_path / "oh.csv", "image,b,a\np,1,\nq,-1,0\n"))
    out = write_labels(table, tmp_path / "w.csv")
    assert out.read_text().splitlines() == ["image,a,b", "p,,1", "q,0,"]
    again = read_labels(out)
    np.testing.assert_array_equal(again.known, table.known)
    with pytest.raises(DataError, match="2 unknown label values"):
        write_labels(table, tmp_path / "t.csv", format="tags")


def test_write_json_formats_round_trip(tmp_path):
    table = LabelTable.from_label_sets(["a", "b"], [["x"], []], source_format="jsonl")
    for fmt, name in [("jsonl", "o.jsonl"), ("json", "o.json")]:
        again = read_labels(write_labels(table, tmp_path / name, format=fmt))
        assert again.source_format == fmt and again.items == ["a", "b"] and again.label_sets() == [["x"], []]


def test_write_coco_as_tags_csv_with_a_safe_separator(tmp_path):
    table = read_labels(write(tmp_path / "c.json", json.dumps(coco())))
    out = write_labels(table, tmp_path / "c.csv")
    assert out.read_text().splitlines()[:2] == ["image,labels", 'a.jpg,"person,traffic light"']
    again = read_labels(out)
    assert again.source_format == "tags" and sets(again) == sets(table)


def test_write_headerless_index_file_round_trips(tmp_path):
    names = write(tmp_path / "labels.txt", "b\na\n")
    table = read_labels(write(tmp_path / "t.tsv", "t1\t0,1\tx\nt2\t1\ty\n"), no_header=True, label_names_file=names)
    out = write_labels(table, tmp_path / "w.tsv")
    assert out.read_text().splitlines() == ["t1\t1,0", "t2\t1"]
    again = read_labels(out, no_header=True, label_names_file=names)
    assert again.label_sets() == table.label_sets() == [["a", "b"], ["a"]]


# ---- CSV files as pandas and Kaggle write them ---------------------------------------------
FIXTURES = Path(__file__).parent / "fixtures"


def test_pandas_index_column_is_skipped():
    table = read_labels(FIXTURES / "pandas_to_csv_index.csv")
    assert table.source_format == "tags" and table.meta["id_column"] == "image"
    assert sets(table) == {"a.jpg": ["cat", "dog"], "b.jpg": ["dog"], "c.jpg": ["cat"]}
    assert table.meta["notes"] == ["the unnamed first column holds the row numbers 0..2 (a pandas index): skipped"]
    assert table.meta["repeated_tags"] == [["pandas_to_csv_index.csv line 4", ["cat"]]]


def test_unnamed_column_that_is_not_an_index_stays(tmp_path):
    table = read_labels(write(tmp_path / "l.csv", ",labels\n7.jpg,cat\n3.jpg,dog\n"))
    assert table.items == ["7.jpg", "3.jpg"] and "notes" not in table.meta


def test_kaggle_onehot_with_class_id_reads_the_01_columns():
    table = read_labels(FIXTURES / "kaggle_onehot_class_id.csv")
    assert table.source_format == "onehot" and table.items == ["train_0", "train_1", "train_2", "train_3"]
    assert table.label_names == ["healthy", "multiple_diseases", "rust", "scab"]
    assert table.targets.tolist() == [[0, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    assert table.meta["notes"][0].startswith("the unnamed first column holds the row numbers 0..3")
    assert table.meta["notes"][1].startswith("column(s) 'class_id' hold values other than 0/1 (a class id?)")


def test_onehot_column_with_one_slip_is_still_an_error(tmp_path):
    path = write(tmp_path / "oh.csv", "image,a,b\n" + "".join(f"x{i},1,0\n" for i in range(9)) + "y,2,0\n")
    with pytest.raises(DataError, match=r"oh\.csv line 11, column 'a': value '2' is not 0 or 1"):
        read_labels(path)


def test_index_column_in_a_feature_table_is_skipped(tmp_path):
    from tagnet.data.feature_table import read_feature_table

    found = read_feature_table(write(tmp_path / "t.csv", ",f1,f2,y\n0,0.5,1,1\n1,0.25,2,0\n"), label_columns=["y"])
    assert found.feature_names == ["f1", "f2"] and found.features.tolist() == [[0.5, 1.0], [0.25, 2.0]]
