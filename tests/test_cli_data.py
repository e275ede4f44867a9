"""`tagnet --version`, `tagnet data check` and `tagnet data split` from the command line."""

import json
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import tagnet
from tagnet.cli import app, main

runner = CliRunner()


def make_set(root, rows: list[str]):
    (root / "img").mkdir(parents=True)
    for k, row in enumerate(rows):
        name = row.split(",")[0]
        Image.fromarray(np.full((6, 6, 3), 20 * k, dtype=np.uint8)).save(root / "img" / name)
    labels = root / "labels.csv"
    labels.write_text("image,labels\n" + "\n".join(rows) + "\n")
    return labels


ROWS = [f"{k}.jpg,{['cat', 'dog', 'cat dog'][k % 3]}" for k in range(12)]


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["tagnet", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def test_help_and_version():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "data" in result.output
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0 and "check" in result.output and "split" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"tagnet {tagnet.__version__}"


def test_check_good_set(tmp_path):
    labels = make_set(tmp_path, ROWS)
    report_file = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "check", str(labels), "--images", str(tmp_path / "img"),
                                 "--min-examples", "3", "--json", str(report_file)])
    assert result.exit_code == 0, result.output
    assert "12 images decoded" in result.output and "usable" in result.output
    report = json.loads(report_file.read_text())
    assert report["usable"] and report["label_counts"] == {"cat": 8, "dog": 8}


def test_check_broken_set(tmp_path):
    labels = make_set(tmp_path, ROWS)
    (tmp_path / "img" / "3.jpg").unlink()
    (tmp_path / "img" / "5.jpg").write_bytes(b"garbage, not a jpeg" * 20)
    with labels.open("a") as f:
        f.write("7.jpg,cat\n")
    result = runner.invoke(app, ["data", "check", str(labels), "--images", str(tmp_path / "img")])
    assert result.exit_code == 1
    out = result.output
    assert "labels.csv line 5" in out and "3.jpg does not exist" in out
    assert "labels.csv line 7" in out and "5.jpg cannot be decoded" in out
    assert "labels.csv lines 9, 14" in out and "'7.jpg' appears 2 times" in out
    assert "not usable" in out and "Traceback" not in out


def test_check_reader_error_names_columns(monkeypatch, capsys, tmp_path):
    labels = make_set(tmp_path, ROWS)
    code, out, err = run_main(monkeypatch, capsys, "data", "check", str(labels), "--labels-column", "tags")
    assert code == 1 and "available columns: image, labels" in out and "Traceback" not in out + err


def test_split_command(tmp_path):
    labels = make_set(tmp_path, ROWS)
    result = runner.invoke(app, ["data", "split", str(labels), "--val", "0.25", "--seed", "1",
                                 "--out", str(tmp_path / "parts")])
    assert result.exit_code == 0, result.output
    assert "items" in result.output and "wrote val" in result.output
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["train.csv", "val.csv"]
    val = (tmp_path / "parts" / "val.csv").read_text().splitlines()
    assert val[0] == "image,labels" and len(val) == 1 + 3


def test_user_errors_print_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    labels = make_set(tmp_path, ROWS)
    code, out, err = run_main(monkeypatch, capsys, "data", "split", str(labels), "--val", "1.5", "--out", str(tmp_path))
    assert code == 2 and err == "error: val fraction must be between 0 and 1 (exclusive), got 1.5\n"
    code, out, err = run_main(monkeypatch, capsys, "data", "split", str(tmp_path / "none.csv"), "--out", str(tmp_path))
    assert code == 2 and err.startswith("error: label file") and err.count("\n") == 1
    code, out, err = run_main(monkeypatch, capsys, "data", "check", str(labels), "--json",
                              str(tmp_path / "no" / "dir" / "r.json"))
    assert code == 2 and err.startswith("error: No such file or directory") and "Traceback" not in err
