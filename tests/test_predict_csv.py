"""The CSV rows written in blocks are byte for byte what csv.writer wrote cell by cell."""

import csv
import io

import numpy as np
import pytest

import tagnet.inference.predictor as predictor_module
from tagnet.inference.predictor import Prediction, PredictionResults, csv_rows

SOURCES = ["a.jpg", "with,comma", 'with "quote"', "two\r\nlines", "tab\there", "", "one\nline feed"]


def _reference(results: PredictionResults, delimiter: str) -> str:
    """The former writer: csv.writer, one row of source, labels and f"{p:.6f}" per label."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerows([p.source, " ".join(p.labels)] + [f"{p.probabilities[n]:.6f}" for n in results.label_names]
                     for p in results.predictions)
    return buffer.getvalue()


def _results(with_matrix: bool) -> PredictionResults:
    rng = np.random.default_rng(0)
    names = ["x", "y,z", "w"]
    probs = rng.random((len(SOURCES), 3)).astype(np.float32)
    probs[0] = [0.0, 1.0, 0.5]
    probs[1] = [0.0000005, 0.0000015, 0.9999995]  # halfway-looking values: rounded as their float32 values are
    predictions = [Prediction(src, dict(zip(names, row)), [n for n, v in zip(names, row) if v >= 0.5])
                   for src, row in zip(SOURCES, probs.tolist())]
    return PredictionResults(predictions, names, probs=probs if with_matrix else None)


@pytest.mark.parametrize("delimiter", [",", "\t"])
@pytest.mark.parametrize("with_matrix", [True, False])
def test_blocks_equal_the_cell_by_cell_rows(delimiter, with_matrix, monkeypatch):
    results = _results(with_matrix)
    expected = _reference(results, delimiter)
    assert "".join(csv_rows(results, delimiter)) == expected
    monkeypatch.setattr(predictor_module, "CSV_BLOCK_CELLS", 4)  # one row a block
    assert "".join(csv_rows(results, delimiter)) == expected
    assert expected.count("\r\n") == len(SOURCES) + 1  # the quoted source holds one


def test_written_file_has_the_header_and_the_rows(tmp_path):
    results = _results(True)
    path = results.write(tmp_path / "p.csv")
    header = "source,labels,x,\"y,z\",w\r\n"
    assert path.read_bytes() == (header + _reference(results, ",")).encode()
    assert "".join(csv_rows(PredictionResults([], ["x"]))) == ""
