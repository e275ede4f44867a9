"""Training end to end through the Python API: run folder contents, bad images, the feature-cache path."""

import csv
import json

import numpy as np
import pytest

from tagnet.inference.artifact import load_artifact
from tagnet.config.settings import TrainConfig, load_config
from tagnet.errors import DataError
from tagnet.evaluation.evaluate import evaluate
from tagnet.inference.predictor import Predictor
from tagnet.training.trainer import train


def test_run_folder_has_artifact_metrics_and_config(tiny_run):
    run = tiny_run.run_dir
    assert (run / "artifact" / "model.safetensors").is_file() and (run / "artifact" / "tagnet.json").is_file()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and {r["phase"] for r in rows} == {"train"}
    assert all(0.0 <= float(r["val_mAP"]) <= 1.0 for r in rows)
    config = load_config(run / "config.json")
    assert config.backbone == "seed_cnn" and config.image_size == 32
    saved = json.loads((run / "metrics.json").read_text())["validation"]
    assert saved["mAP"] == pytest.approx(tiny_run.report.mAP)
    # the best epoch's validation mAP is what the artifact reports
    assert max(float(r["val_mAP"]) for r in rows) == pytest.approx(tiny_run.report.mAP, abs=1e-6)


def test_predictor_reproduces_validation_probabilities(tiny_run, synthetic_data):
    """Predict cannot drift from train: same resize, normalisation and weights give the same probabilities."""
    rows = list(csv.DictReader((tiny_run.run_dir / "val_predictions.csv").open()))
    predictor = Predictor(tiny_run.artifact_dir)
    results = predictor.predict_paths([synthetic_data.images_dir / r["item"] for r in rows])
    names = predictor.label_names
    expected = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
    got = np.array([[p.probabilities[n] for n in names] for p in results])
    np.testing.assert_allclose(got, expected, atol=2e-2)  # training validated under bf16 autocast


def test_evaluate_matches_training_report_on_validation_items(tiny_run, synthetic_data, tmp_path):
    rows = list(csv.DictReader((tiny_run.run_dir / "val_predictions.csv").open()))
    val_items = {r["item"] for r in rows}
    lines = [line for line in synthetic_data.labels_csv.read_text().splitlines()[1:] if line.split(",")[0] in val_items]
    val_file = tmp_path / "val.csv"
    val_file.write_text("image,labels\n" + "\n".join(lines) + "\n")
    report, skipped = evaluate(tiny_run.run_dir, val_file, images_dir=synthetic_data.images_dir)
    assert skipped == {} and report.n_items == len(rows)
    assert report.mAP == pytest.approx(tiny_run.report.mAP, abs=0.03)


def test_evaluate_with_other_label_names_names_them(tiny_run, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("image,labels\na.png,circle dog\n")
    with pytest.raises(DataError, match=r"unexpected \['dog'\]"):
        evaluate(tiny_run.run_dir, other, images_dir=tmp_path)


def test_corrupt_and_missing_images_are_skipped_and_named(synthetic_data, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    lines = synthetic_data.labels_csv.read_text().splitlines()
    for line in lines[1:61]:
        name = line.split(",")[0]
        (images / name).write_bytes((synthetic_data.images_dir / name).read_bytes())
    (images / "broken.png").write_bytes(b"not an image at all")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines[:61] + ["broken.png,circle", "missing.png,square"]) + "\n")
    config = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=24, epochs=1, batch_size=16)
    result = train(labels, images_dir=images, out_dir=tmp_path / "run", config=config, progress=False)
    assert sorted(p.split("/")[-1] for p in result.skipped) == ["broken.png", "missing.png"]
    assert "not a readable image" in result.skipped[str(images / "broken.png")]
    assert load_artifact(result.run_dir).label_names == synthetic_data.table.label_names


def test_pretrained_backbone_head_on_cached_features_then_finetune(synthetic_data, tmp_path):
    config = TrainConfig(image_size=64, epochs=3, batch_size=16, finetune=True, finetune_epochs=1)
    result = train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=tmp_path / "run",
                   config=config, progress=False)  # default backbone: efficientnet_lite0+efficientnet_lite1+efficientnet_lite2
    assert len(list((tmp_path / "run" / "cache").glob("features-*.safetensors"))) == 6  # each member's features of every image, and mirrored
    phases = [line.split(",")[0] for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert phases == ["head"] * 3 + ["finetune"]
    assert result.report.mAP > 0.6  # chance is about 0.33 on these labels
    meta = load_artifact(result.artifact_dir).meta
    assert meta["input"]["mean"] == [0.5, 0.5, 0.5] and meta["input"]["image_size"] == 64
    assert meta["model"]["name"] == "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2"
    # the fused default exports as one ONNX graph and explains
    import tagnet
    from tagnet.inference.explain import explain_images

    images = sorted(synthetic_data.images_dir.glob("*.png"))[:3]
    report = tagnet.export_onnx(result.artifact_dir)
    assert report.parity_max_abs_diff <= 1e-4
    on_torch = Predictor(result.artifact_dir, runtime="torch")
    np.testing.assert_allclose(Predictor(result.artifact_dir, runtime="onnx").predict_proba(images),
                               on_torch.predict_proba(images), atol=1e-4)
    probabilities = on_torch.predict_proba(images[:1])[0]
    label = on_torch.label_names[int(probabilities.argmax())]
    [explanation] = explain_images(on_torch, images[:1], labels=[label])
    heatmap = explanation.heatmaps[label]
    assert explanation.image.shape == (64, 64, 3) and heatmap.shape == (64, 64) and 0 <= heatmap.min() < heatmap.max() <= 1
