"""Dataset check: statistics and every problem reported with its row or file."""

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

from typer.testing import CliRunner

from tagnet.cli import app
from tagnet.data.check import check_dataset
from tagnet.report.data_check import render_report
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError


def make_images(folder: Path, names: list[str], size: tuple[int, int] = (8, 6)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(np.full((size[1], size[0], 3), k * 20, dtype=np.uint8)).save(folder / name)


def rendered(report) -> str:
    out = io.StringIO()
    render_report(report, Console(file=out, width=100))
    return out.getvalue()


def test_good_dataset_statistics(tmp_path):
    rows = ["a.jpg,cat dog", "b.jpg,cat", "c.jpg,cat dog bird", "d.jpg,dog", "e.jpg,cat bird"]
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\n" + "\n".join(rows) + "\n")
    make_images(tmp_path / "img", [r.split(",")[0] for r in rows])
    report = check_dataset(labels, images_dir=tmp_path / "img", min_examples=2)
    assert report.usable and report.problems == []
    assert report.format == "tags" and report.items == 5 and report.labels == ["bird", "cat", "dog"]
    assert report.label_counts == {"bird": 2, "cat": 4, "dog": 3}
    assert report.labels_per_item == {"mean": 1.8, "histogram": {"0": 0, "1": 2, "2": 2, "3+": 1}}
    assert report.top_pairs == [("bird", "cat", 2), ("cat", "dog", 2), ("bird", "dog", 1)]  # ties: label order
    assert report.images_checked == 5 and report.image_sizes == {"8x6": 5}
    assert [s.status for s in report.steps] == ["ok", "ok", "ok"]
    assert json.loads(json.dumps(report.to_dict()))["usable"] is True
    assert "usable" in rendered(report)


def test_broken_dataset_names_rows_and_files(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\na.jpg,cat\nb.jpg,dog\nc.jpg,cat dog\na.jpg,dog\nd.jpg,\n")
    make_images(tmp_path / "img", ["a.jpg", "d.jpg"])
    (tmp_path / "img" / "c.jpg").write_bytes(b"this is not a jpeg" * 10)
    report = check_dataset(labels, images_dir=tmp_path / "img", min_examples=2)
    assert not report.usable
    found = {(p.severity, p.kind, p.where) for p in report.problems}
    assert found == {
        ("warning", "duplicate id", "labels.csv lines 2, 5"),
        ("error", "missing image", "labels.csv line 3"),
        ("error", "unreadable image", "labels.csv line 4"),
        ("warning", "empty label set", "labels.csv line 6"),
    }
    assert [s.status for s in report.steps] == ["ok", "warning", "failed"]
    text = rendered(report)
    for expected in ["labels.csv lines 2, 5", "appears 2 times with different labels", "b.jpg does not exist",
                     "c.jpg cannot be decoded", "not usable"]:
        assert expected in text


def test_repeated_ids_with_one_tag_a_row_are_grouped_and_said(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\na.jpg,cat\nb.jpg,dog\na.jpg,dog\n")
    make_images(tmp_path / "img", ["a.jpg", "b.jpg"])
    report = check_dataset(labels, images_dir=tmp_path / "img", min_examples=1)
    assert report.format == "long" and report.items == 2 and report.label_counts == {"cat": 1, "dog": 2}
    assert not [p for p in report.problems if p.kind == "duplicate id"]
    assert "repeat and each row has one 'labels'" in " ".join(rendered(report).split())


def test_truncated_image_and_rare_labels(tmp_path):
    make_images(tmp_path, ["ok.png"], size=(64, 64))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    (tmp_path / "t.jpg").write_bytes((tmp_path / "t.jpg").read_bytes()[:300])
    table = LabelTable.from_label_sets(["ok.png", "t.jpg"], [["a"], ["a", "b"]])
    report = check_dataset(table, images_dir=tmp_path, min_examples=2)
    kinds = {(p.kind, p.where) for p in report.problems}
    assert ("unreadable image", "row 2") in kinds
    assert ("rare label", "b") in kinds and ("constant label", "a") in kinds


def test_unreadable_label_file_is_a_failed_step(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\na.jpg,cat\n")
    report = check_dataset(labels, labels_column="tags")
    assert not report.usable and report.items == 0
    assert [s.status for s in report.steps] == ["failed", "skipped", "skipped"]
    assert "available columns: image, labels" in report.problems[0].message
    assert "available columns: image, labels" in rendered(report)


def test_folders_source_checks_its_own_images(tmp_path):
    make_images(tmp_path / "data" / "cat", ["1.png", "2.png"])
    make_images(tmp_path / "data" / "dog", ["2.png"])
    (tmp_path / "data" / "dog" / "3.png").write_bytes(b"\x89PNG broken")
    report = check_dataset(tmp_path / "data", min_examples=1)
    assert report.images_checked == 3
    assert [(p.kind, Path(p.where).name) for p in report.problems] == [("unreadable image", "3.png")]


def test_unknown_cells_are_counted(tmp_path):
    labels = tmp_path / "oh.csv"
    labels.write_text("image,a,b\nx,1,\ny,0,1\nz,-1,1\n")
    report = check_dataset(labels, min_examples=1)
    assert report.unknown_counts == {"a": 1, "b": 1} and report.label_counts == {"a": 1, "b": 2}
    assert report.steps[2].status == "skipped"


def test_miml_scene_is_usable(shared_data):
    scene = shared_data / "miml-scene"
    report = check_dataset(scene / "labels.csv", images_dir=scene / "images")
    assert report.usable and report.problems == []
    assert report.items == report.images_checked == 1600
    assert sum(report.labels_per_item["histogram"].values()) == 1600
    assert report.top_pairs[0][:2] == ("sea", "sunset")


def test_top_pairs_match_the_dense_count_in_any_block_size(monkeypatch):
    from tagnet.data import check

    rng = np.random.default_rng(5)
    targets = (rng.random((60, 25)) < 0.2).astype(np.uint8)
    known = rng.random((60, 25)) > 0.1
    table = LabelTable([f"i{k}.jpg" for k in range(60)], [f"l{j:02d}" for j in range(25)], targets, known)
    positives = (targets.astype(bool) & known).astype(np.int64)
    co = positives.T @ positives
    dense = sorted(((f"l{a:02d}", f"l{b:02d}", int(co[a, b])) for a in range(25) for b in range(a + 1, 25)
                    if co[a, b] > 0), key=lambda p: -p[2])[:check.TOP_PAIRS]
    for block in (1 << 24, 50, 1):  # one product, a few label blocks, one label per block
        monkeypatch.setattr(check, "PAIR_BLOCK", block)
        assert check_dataset(table).top_pairs == dense


def test_one_hot_file_with_20000_label_columns(tmp_path):
    names = [f"tag{j:05d}" for j in range(20_000)]
    rows = []
    for i in range(30):
        cells = np.zeros(len(names), dtype=int)
        cells[[i, i + 1, 19_999]] = 1  # every item: two neighbouring labels and the last one
        rows.append(f"img{i}.jpg," + ",".join(map(str, cells)))
    labels = tmp_path / "wide.csv"
    labels.write_text("image," + ",".join(names) + "\n" + "\n".join(rows) + "\n")
    report = check_dataset(labels, min_examples=1)
    assert report.format == "onehot" and report.items == 30 and len(report.labels) == 20_000
    assert report.top_pairs[:3] == [("tag00001", "tag19999", 2), ("tag00002", "tag19999", 2), ("tag00003", "tag19999", 2)]
    assert len(report.top_pairs) == 10 and report.label_counts["tag19999"] == 30
    assert sum(p.kind == "constant label" for p in report.problems) == 1


def test_pandas_kaggle_csv_notes_repeated_and_integer_tags(tmp_path):
    fixtures = Path(__file__).parent / "fixtures"
    report = check_dataset(fixtures / "kaggle_onehot_class_id.csv")
    assert report.format == "onehot" and report.labels == ["healthy", "multiple_diseases", "rust", "scab"]
    assert any("'class_id' hold values other than 0/1" in note for note in report.notes)
    assert "'class_id'" in rendered(report)
    report = check_dataset(fixtures / "pandas_to_csv_index.csv")
    repeated = [p for p in report.problems if p.kind == "repeated tag"]
    assert [(p.severity, p.where) for p in repeated] == [("warning", "pandas_to_csv_index.csv line 4")]
    assert "label(s) ['cat'] appear more than once in one row" in repeated[0].message
    labels = tmp_path / "ids.csv"
    labels.write_text("image,labels\na.jpg,3 12\nb.jpg,0\n")
    integer = [p for p in check_dataset(labels, min_examples=1).problems if p.kind == "integer labels"]
    assert len(integer) == 1 and "every label is an integer (0, 12, 3)" in integer[0].message
    assert "--label-names FILE" in integer[0].message
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"n{i}" for i in range(13)))
    assert not [p for p in check_dataset(labels, label_names_file=names, min_examples=1).problems if p.kind == "integer labels"]


def test_ids_without_suffix_are_found_by_stem(tmp_path):
    make_images(tmp_path / "img", ["Train_0.jpg", "Train_1.png", "Train_2.jpg", "Train_2.png"])
    labels = tmp_path / "train.csv"
    labels.write_text("image_id,healthy,rust\nTrain_0,1,0\nTrain_1,0,1\n")
    report = check_dataset(labels, images_dir=tmp_path / "img", min_examples=1)
    assert report.usable and report.images_checked == 2
    labels.write_text("image_id,healthy,rust\nTrain_0,1,0\nTrain_2,0,1\n")
    report = check_dataset(labels, images_dir=tmp_path / "img", min_examples=1)
    assert [p.kind for p in report.errors()] == ["ambiguous image"]
    assert "Train_2.jpg, Train_2.png" in report.errors()[0].message


def test_a_feature_table_read_as_a_list_of_images_names_the_other_reading(numbers_csv, tmp_path):
    """A CSV of numbers and label columns, checked or trained without --tabular, reads as image ids that are numbers:
    the check warns and the run's one-line error (nothing readable) both name the feature-table reading and
    --tabular; with it, no warning; a CSV of numbered texts (not a feature table) gets none either."""
    labels, rows = numbers_csv
    for options in ({"label_columns": ["a", "b"]}, {}):  # the columns named, or found by the label reader
        report = check_dataset(labels, **options)
        [other] = [p for p in report.warnings() if p.kind == "feature table"]
        assert other.message == (f"every input it names is a number ({rows[0, 0]:.3f}, {rows[1, 0]:.3f}, "
                                 f"{rows[2, 0]:.3f}, ...), not a file, and it reads as a feature table of 3 numeric "
                                 "columns and 2 labels: add --tabular")
    assert not [p for p in check_dataset(labels, tabular=True, label_columns=["a", "b"]).problems
                if p.kind == "feature table"]
    numbered = LabelTable(["1", "2", "3"], ["a"], np.array([[1], [0], [1]], np.uint8), np.ones((3, 1), bool))
    assert check_dataset(numbered, min_examples=1).usable  # a table in memory has no file to read otherwise
    texts = tmp_path / "texts.csv"  # numbered texts: not a feature table, so nothing is said
    texts.write_text("id,text,a,b\n" + "".join(f"{i},words {i},{i % 2},{1 - i % 2}\n" for i in range(30)))
    assert not [p for p in check_dataset(texts).problems if p.kind == "feature table"]
    done = CliRunner().invoke(app, ["train", str(labels), "--label-columns", "a,b", "--out", str(tmp_path / "run")])
    said = str(done.exception)  # cli.main prints a DataError as one line
    assert isinstance(done.exception, DataError) and "\n" not in said
    assert f"no readable inputs left for training; {other.message}" in said
    assert said.endswith("add --tabular")


def test_data_check_counts_the_image_sizes_it_does_not_show(tmp_path):
    rows = ["image,tags"]
    for i, width in enumerate([8, 8, 9, 10, 11, 12]):
        Image.new("RGB", (width, 6)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,a")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    report = check_dataset(tmp_path / "labels.csv", images_dir=tmp_path)
    detail = next(step.detail for step in report.steps if step.name == "images")
    assert detail.startswith("6 images decoded; sizes 8x6 (2), ")
    assert detail.endswith("and 2 other sizes (2 images)")


def test_check_of_many_labels_shows_the_most_frequent_and_the_rarest(tmp_path):
    names = [f"tag{j:03d}" for j in range(60)]
    rows = [f"{i}.jpg," + " ".join(names[: 1 + (i % 60)]) for i in range(60)]  # tag000 on every row, tag059 on one
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\n" + "\n".join(rows) + "\n")
    text = rendered(check_dataset(labels, min_examples=1))
    label_rows = [line.split()[0] for line in text.splitlines() if line.strip().startswith("tag")]
    assert label_rows == names[:20] + names[40:]
    assert "40 of 60 labels shown: the 20 most frequent and the 20 rarest" in " ".join(text.split())
