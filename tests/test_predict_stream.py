"""`tagnet predict` into a file written chunk by chunk: the same rows as an in-memory prediction, bounded chunks,
and --resume after an interruption."""

import csv
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tagnet.cli import app, main
from tagnet.errors import DataError
from tagnet.inference.predictor import Predictor
from tagnet.inference.streaming import stream_predictions

runner = CliRunner()


def test_streamed_rows_equal_the_in_memory_ones(tiny_run, synthetic_data, tmp_path):
    predictor = Predictor(tiny_run.run_dir)
    images = [str(synthetic_data.images_dir / "0000*.png")]
    whole = predictor.predict_paths(images).write(tmp_path / "whole.csv")
    seen = []
    original = predictor.predict
    predictor.predict = lambda items, sources=None: seen.append(len(items)) or original(items, sources=sources)
    summary = stream_predictions(predictor, images, tmp_path / "stream.csv", chunk=3)
    streamed, expected = (list(csv.reader(path.open())) for path in (tmp_path / "stream.csv", whole))
    assert [row[:2] for row in streamed] == [row[:2] for row in expected]  # sources and label sets, in order
    assert len(streamed) == 11 and streamed[0] == expected[0]
    # batches of 3 instead of 10 may change the last float digit, nothing more
    np.testing.assert_allclose(np.array([row[2:] for row in streamed[1:]], float),
                               np.array([row[2:] for row in expected[1:]], float), atol=2e-6)
    assert seen == [3, 3, 3, 1] and summary.written == 10 and len(summary.first) == 10


def test_resume_predicts_only_what_is_missing(tiny_run, synthetic_data, tmp_path):
    predictor = Predictor(tiny_run.run_dir)
    images = [str(synthetic_data.images_dir / "0000*.png")]
    full = tmp_path / "full.jsonl"
    stream_predictions(predictor, images, full)
    lines = full.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])  # killed in the middle of row 5
    summary = stream_predictions(predictor, images, cut, resume=True)
    assert summary.resumed == 4 and summary.written == 6
    assert [json.loads(line) for line in cut.read_text().splitlines()] == [json.loads(line) for line in lines]


def test_cli_streams_and_resumes(tiny_run, synthetic_data, tmp_path):
    out = tmp_path / "pred.tsv"
    pattern = str(synthetic_data.images_dir / "0000*.png")
    first = runner.invoke(app, ["predict", str(tiny_run.run_dir), pattern, "--output", str(out)])
    assert first.exit_code == 0, first.output
    rows = out.read_text().splitlines()
    assert rows[0].split("\t")[:2] == ["source", "labels"] and len(rows) == 11
    out.write_text("\n".join(rows[:6]) + "\n")
    again = runner.invoke(app, ["predict", str(tiny_run.run_dir), pattern, "--output", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert "kept 5 already there" in " ".join(again.output.split()) and out.read_text().splitlines() == rows


def test_resume_refuses_a_file_tagnet_did_not_write(tiny_run, synthetic_data, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("image,labels\n1.png,sea\n")
    with pytest.raises(DataError, match="expected a tagnet predictions file"):
        stream_predictions(Predictor(tiny_run.run_dir), [str(synthetic_data.images_dir / "0001.png")], other,
                           resume=True)


def test_resume_without_a_streamed_output_is_one_line(tiny_run, synthetic_data, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tagnet", "predict", str(tiny_run.run_dir),
                                      str(synthetic_data.images_dir / "0001.png"), "--resume"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.strip() == ("error: --resume continues a streamed --output file "
                                                   "(.csv, .tsv, .jsonl); got no --output")
