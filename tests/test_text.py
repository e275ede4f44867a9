"""Tests of text inputs: reading a text column, the offline MiniLM encoder and its cache, text train/predict/evaluate."""

from __future__ import annotations

import dataclasses
import csv
import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from rich.console import Console
from typer.testing import CliRunner

from tagnet import engine
from tagnet.engine import fit
from tagnet.cli import app
from tagnet.config.settings import TrainConfig
from tagnet.data.labels import read_labels_with_texts
from tagnet.errors import ConfigError, DataError, ModelError
from tagnet.evaluation.evaluate import evaluate
from tagnet.models import create_model
from tagnet.engine.optim import adamw
from tagnet.modalities.base import LabeledInputs
from tagnet.modalities.text import as_text_array, cached_embeddings
from tagnet.models import set_backbone_trainable
from tagnet.models.text import encode_texts, package_model_dir
from tagnet.inference.predictor import Predictor
from tagnet.training.trainer import resume_training, train as train_run
from tagnet.modalities import get as get_modality

LABELS = ["food", "sport", "weather"]
PARTS = {
    "food": ["the pizza was delicious", "we cooked pasta with garlic", "fresh bread and cheese for lunch",
             "this soup tastes amazing", "I baked a chocolate cake"],
    "sport": ["the striker scored a goal", "our team won the match", "she ran a marathon today",
              "the tennis final went to five sets", "he swims laps every morning"],
    "weather": ["heavy rain all afternoon", "it is sunny and warm", "a storm is coming tonight",
                "snow covered the streets", "strong wind and cold fog"],
}
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("no_network")  # every test here must work offline


def _examples(seed: int) -> list[tuple[str, list[int]]]:
    """Sentences about one or two topics, with the indices (lines of labels.txt) of their labels."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(24):
        first = LABELS[k % 3]
        text = PARTS[first][rng.integers(5)]
        labels = [LABELS.index(first)]
        if k % 4 == 0:
            second = LABELS[(k + 1) % 3]
            text += " and " + PARTS[second][rng.integers(5)]
            labels.append(LABELS.index(second))
        out.append((text, labels))
    return out


def _goemotions_layout(path, examples):
    """No header; text, comma-separated label ids, comment id (the GoEmotions release layout)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        for n, (text, labels) in enumerate(examples):
            writer.writerow([text, ",".join(map(str, labels)), f"c{n}"])
    return path


def test_read_goemotions_layout_with_options(tmp_path):
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(LABELS) + "\n")
    path = _goemotions_layout(tmp_path / "train.tsv", [('he said "hi", then left', [0, 2]), ("rain", [2])])
    table, texts = read_labels_with_texts(path, "0", no_header=True, label_names_file=names, id_column="2")
    assert texts == ['he said "hi", then left', "rain"]
    assert table.items == ["c0", "c1"] and table.label_names == LABELS
    np.testing.assert_array_equal(table.targets, [[1, 0, 1], [0, 0, 1]])
    table, _ = read_labels_with_texts(path, "0", no_header=True, label_names_file=names)
    assert table.items == texts  # without an id column the text is the item


def test_read_text_column_of_csv_onehot_and_jsonl(tmp_path):
    tags = tmp_path / "tags.csv"
    tags.write_text("text,labels\ngood food,food\nrainy match,sport weather\n")
    table, texts = read_labels_with_texts(tags, "text")
    assert texts == ["good food", "rainy match"] and table.label_sets() == [["food"], ["sport", "weather"]]
    onehot = tmp_path / "onehot.csv"
    onehot.write_text("id,text,food,sport\n1,good food,1,0\n2,a goal,0,1\n")
    table, texts = read_labels_with_texts(onehot, "text")
    assert table.label_names == ["food", "sport"] and table.items == ["1", "2"] and texts == ["good food", "a goal"]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "good food", "labels": ["food"]}\n{"text": "a goal", "labels": ["sport"]}\n')
    table, texts = read_labels_with_texts(jsonl, "text")
    assert table.items == texts == ["good food", "a goal"]
    with pytest.raises(DataError, match="no column 'body' for the text"):
        read_labels_with_texts(tags, "body")
    with pytest.raises(DataError, match="must hold a string"):
        jsonl.write_text('{"id": 1, "text": 5, "labels": ["food"]}\n')
        read_labels_with_texts(jsonl, "text")


@pytest.fixture(scope="module")
def encoder():
    return create_model("minilm_l6", num_labels=2).backbone


def test_encoder_matches_sentence_transformers(encoder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["the pizza was delicious", "a storm is coming tonight", "ok", PARTS["sport"][3] * 3]
    reference = sentence_transformers.SentenceTransformer(str(package_model_dir()), device="cpu",
                                                          local_files_only=True).encode(texts)
    ours = encode_texts(encoder, texts, batch_size=2).numpy()
    assert ours.shape == (4, 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_embeddings_are_cached_on_disk(encoder, tmp_path, monkeypatch):
    texts = ["snow covered the streets", "our team won the match"]
    first = cached_embeddings(encoder, texts, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("text-embeddings-*.safetensors"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr("tagnet.models.text.encode_texts", fail)
    np.testing.assert_array_equal(cached_embeddings(encoder, texts, cache_dir=tmp_path).numpy(), first.numpy())


def test_fine_tuning_pads_to_the_longest_text_in_32_bit_and_keeps_the_word_embeddings_fixed(tmp_path):
    """32-bit fine-tuning batches are as long as their longest text (a multiple of 8 in half precision); a training
    step through the run's optimiser leaves the word-embedding table untouched and outside it, and moves the rest."""
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    table, texts = read_labels_with_texts(_goemotions_layout(tmp_path / "train.tsv", _examples(0)), "0", no_header=True,
                                          label_names_file=tmp_path / "labels.txt", id_column="2")
    data = LabeledInputs(table, as_text_array(texts))
    model = create_model("minilm_l6", num_labels=3, head_hidden=16)
    set_backbone_trainable(model, True)
    lengths = [len(ids) for ids in model.backbone.tokenize(texts)]
    kind = get_modality("text")
    batches = list(kind.network_loaders(model, data, data, TrainConfig(batch_size=8, precision="32-true"))[0])
    widths = [ids.shape[1] for ids, *_ in batches]
    assert widths == [max(lengths[i] for i in rows.tolist()) for *_, rows in batches]
    assert any(width % 8 for width in widths)
    half = kind.network_loaders(model, data, data, TrainConfig(batch_size=8, precision="bf16-mixed"))[0]
    assert [ids.shape[1] for ids, *_ in half] == [-(-width // 8) * 8 for width in widths]
    words = model.backbone.transformer.get_input_embeddings().weight
    layer = model.backbone.transformer.encoder.layer[0].output.dense.weight
    words_before, layer_before = words.detach().clone(), layer.detach().clone()
    optimizer = adamw([{"params": [p for p in model.parameters() if p.requires_grad], "lr": 1e-3}], weight_decay=0.01)
    assert all(p is not words for group in optimizer.param_groups for p in group["params"])
    ids, targets, _, _ = batches[0]
    torch.nn.functional.binary_cross_entropy_with_logits(model(ids), targets).backward()
    optimizer.step()
    assert words.grad is None and torch.equal(words, words_before)
    assert not torch.equal(layer, layer_before)


def test_finetune_frozen_layers_keeps_the_lowest_layers_fixed_and_moves_the_rest():
    """With finetune_frozen_layers=2 a fine-tuning step leaves the embedding block and the two lowest transformer
    layers untouched and outside the optimiser, and moves the third; asking to freeze every layer is a ModelError."""
    model = create_model("minilm_l6", num_labels=3, head_hidden=0)
    set_backbone_trainable(model, True)
    model.backbone.freeze_lower(2)
    transformer = model.backbone.transformer
    fixed = [transformer.embeddings.LayerNorm.weight, transformer.encoder.layer[1].output.dense.weight]
    moving = transformer.encoder.layer[2].output.dense.weight
    before = [p.detach().clone() for p in (*fixed, moving)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not any(p is q for p in trainable for q in fixed)
    optimizer = adamw([{"params": trainable, "lr": 1e-3}], weight_decay=0.01)
    ids = model.backbone.pad(model.backbone.tokenize(["the match went to extra time", "rain all day"]))
    torch.nn.functional.binary_cross_entropy_with_logits(model(ids), torch.tensor([[0., 1, 0], [0, 0, 1]])).backward()
    optimizer.step()
    assert all(p.grad is None and torch.equal(p, old) for p, old in zip(fixed, before))
    assert not torch.equal(moving, before[-1])
    with pytest.raises(ModelError, match="at most 5 can stay fixed"):
        model.backbone.freeze_lower(6)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    train = _goemotions_layout(folder / "train.tsv", _examples(0))
    val = _goemotions_layout(folder / "dev.tsv", _examples(1))
    config = TrainConfig(epochs=15, lr=3e-2, batch_size=24, patience=15, finetune=True, finetune_epochs=1,
                         precision="32-true")
    options = {"no_header": True, "label_names_file": folder / "labels.txt", "id_column": "2"}
    result = train_run(train, modality="text", text_column="0", val_labels=val, out_dir=folder / "run",
                           config=config, read_options=options, progress=False)
    return result, val


@pytest.fixture(scope="module")
def predictor(text_run):
    return Predictor(text_run[0].run_dir)


def test_text_run_files_and_artifact(text_run):
    result, _ = text_run
    for name in ("metrics.csv", "metrics.json", "config.json", "run.json", "val_predictions.csv"):
        assert (result.run_dir / name).is_file(), name
    phases = {row["phase"] for row in csv.DictReader((result.run_dir / "metrics.csv").open())}
    assert phases == {"head", "finetune"}
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    assert meta["model"]["name"] == "minilm_l6"
    assert meta["modality"] == "text" and meta["input"]["text_column"] == "0"
    assert json.loads((result.run_dir / "config.json").read_text())["finetune_lr"] == 5e-5
    assert result.report.mAP > 0.8


def test_predictor_labels_new_texts(predictor):
    assert predictor.modality.name == "text"
    found = predictor.predict(["we had pasta and cheese", "the goal in the last minute won the match"])
    assert found.predictions[0].source == "we had pasta and cheese"
    assert "food" in found.predictions[0].labels and "sport" in found.predictions[1].labels
    with pytest.raises(DataError, match="text model"):
        predictor.predict(np.zeros((1, 3)))


def test_loaded_artifact_reproduces_validation_probabilities(text_run, predictor):
    result, val = text_run
    rows = list(csv.DictReader((result.run_dir / "val_predictions.csv").open()))
    saved = np.array([[float(row[f"prob_{name}"]) for name in LABELS] for row in rows])
    texts = [line.split("\t")[0] for line in val.read_text().splitlines()]
    np.testing.assert_allclose(predictor.predict_proba(texts), saved, atol=1e-4)


def test_evaluate_uses_the_training_read_options(text_run, predictor):
    _, val = text_run
    report, skipped = evaluate(predictor, val)
    texts = [line.split("\t")[0] for line in val.read_text().splitlines()]
    truth = np.array([[str(j) in line.split("\t")[1].split(",") for j in range(3)] for line in val.read_text().splitlines()])
    chosen = np.array([[name in p.labels for name in LABELS] for p in predictor.predict(texts)])
    assert skipped == {}
    assert report.micro_f1 == pytest.approx(f1_score(truth, chosen, average="micro"))


def test_cli_predict_text_and_text_file(text_run, tmp_path):
    result, _ = text_run
    out = tmp_path / "p.json"
    done = runner.invoke(app, ["predict", str(result.run_dir), "--text", "heavy snow and wind", "--output", str(out)])
    assert done.exit_code == 0, done.output
    assert "weather" in json.loads(out.read_text())["predictions"][0]["labels"]
    lines = tmp_path / "texts.txt"
    lines.write_text("a sunny day\n\nI love fresh bread\n")
    done = runner.invoke(app, ["predict", str(result.run_dir), "--text-file", str(lines), "--output", str(out)])
    assert done.exit_code == 0, done.output
    assert [p["source"] for p in json.loads(out.read_text())["predictions"]] == [f"{lines}:1", f"{lines}:2"]


def test_text_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--text-column"):
        train_run(tmp_path / "x.tsv", modality="text", out_dir=tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="label_count"):
        train_run(tmp_path / "x.tsv", modality="text", text_column="text", out_dir=tmp_path / "run",
                      read_options={"label_count": 2}, progress=False)


def test_server_answers_json_texts(predictor):
    from fastapi.testclient import TestClient

    from tagnet.serve import create_app

    client = TestClient(create_app(predictor))
    answer = client.post("/predict", json={"texts": ["we had pasta and cheese"]})
    assert answer.status_code == 200
    assert "food" in answer.json()["predictions"][0]["labels"]
    assert client.post("/predict", json={"texts": [3]}).status_code == 400
    assert client.post("/predict", json={"rows": [[1.0]]}).status_code == 400
    assert client.get("/health").json()["status"] == "ok"


def test_export_text_model_to_onnx_with_its_tokenizer(text_run, predictor, tmp_path):
    import onnxruntime
    from tokenizers import Tokenizer

    from tagnet.inference.export import read_onnx_metadata

    result, val = text_run
    folder = shutil.copytree(result.artifact_dir, tmp_path / "artifact")
    done = runner.invoke(app, ["export", str(folder), "--quantize", "--val", str(val), "--json", str(tmp_path / "r.json")])
    assert done.exit_code == 0, done.output
    assert f"wrote{folder / 'model.tokenizer.json'}" in "".join(done.output.split())  # rich wraps long paths
    exported = json.loads((tmp_path / "r.json").read_text())
    assert exported["parity_max_abs_diff"] <= 1e-4 and exported["parity_samples"] == 5
    torch_map = evaluate(predictor, val)[0].mAP
    assert exported["val_map"]["onnx"] == pytest.approx(torch_map, abs=1e-3)
    meta = read_onnx_metadata(folder / "model.onnx")
    assert meta["modality"] == "text" and meta["label_names"] == LABELS and meta["tokenizer"] == "model.tokenizer.json"
    # what a deployment without tagnet or PyTorch does: tokenizers + ONNX Runtime, every text padded to one length
    texts = ["we had pasta and cheese", "ok", "the goal in the last minute won the match and it rained all day"]
    ids = np.array([e.ids for e in Tokenizer.from_file(str(folder / "model.tokenizer.json")).encode_batch(texts)])
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"input_ids": ids})[0]
    np.testing.assert_allclose(probs, predictor.predict_proba(texts), atol=1e-4)
    on_onnx = Predictor(folder)
    assert (on_onnx.runtime, predictor.runtime) == ("onnx", "torch")
    np.testing.assert_allclose(on_onnx.predict_proba(texts), probs, atol=1e-5)
    int8 = Predictor(folder, runtime="onnx", onnx_file="model.int8.onnx")
    assert np.abs(int8.predict_proba(texts) - probs).max() < 0.1


def test_text_ensemble_shares_the_frozen_encoder(text_run, tmp_path):
    _, val = text_run
    train = val.parent / "train.tsv"
    options = {"no_header": True, "label_names_file": val.parent / "labels.txt", "id_column": "2"}
    config = TrainConfig(epochs=3, lr=3e-2, batch_size=24, ensemble=2, precision="32-true")
    result = train_run(train, modality="text", text_column="0", val_labels=val, out_dir=tmp_path / "run",
                           config=config, read_options=options, progress=False)
    phases = {row["phase"] for row in csv.DictReader((result.run_dir / "metrics.csv").open())}
    assert phases == {"head", "head-2"}
    predictor = Predictor(result.run_dir)
    assert sum(name.startswith("backbone.") for name in predictor.model.state_dict()) == \
        sum(name.startswith("backbone.") for name in create_model("minilm_l6", num_labels=3).state_dict())
    rows = list(csv.DictReader((result.run_dir / "val_predictions.csv").open()))
    saved = np.array([[float(row[f"prob_{name}"]) for name in LABELS] for row in rows])
    texts = [line.split("\t")[0] for line in val.read_text().splitlines()]
    np.testing.assert_allclose(predictor.predict_proba(texts), saved, atol=1e-4)


def test_epochs_bound_the_fine_tuning_of_the_default_recipe(text_run, tmp_path, monkeypatch):
    """--epochs 1 on text's default recipe (a head, then fine-tuning sized to the 15-minute budget): every phase
    trains at most one epoch, fine-tuning too (it planned finetune_epochs=3 before)."""
    _, val = text_run
    options = {"no_header": True, "label_names_file": val.parent / "labels.txt", "id_column": "2"}
    config = TrainConfig(epochs=1, lr=3e-2, batch_size=8, precision="32-true")
    console = Console(record=True, width=300)
    probed, measure = [], engine.measure_throughput

    def spy(network, batches, evals, *, precision, warmup, other_threads):
        probed.append((batches, warmup, other_threads))
        measured = measure(network, batches, evals, precision=precision, warmup=warmup, other_threads=other_threads)
        return dataclasses.replace(measured, threads=1)  # as if one thread had been the faster

    phase_threads, phase = {}, fit.run_phase

    def run_phase(*args, threads=None, **kwargs):
        phase_threads[kwargs["phase"]] = threads
        return phase(*args, threads=threads, **kwargs)

    monkeypatch.setattr(engine, "measure_throughput", spy)
    monkeypatch.setattr(fit, "run_phase", run_phase)
    result = train_run(val.parent / "train.tsv", modality="text", text_column="0", val_labels=val,
                       out_dir=tmp_path / "run", config=config, read_options=options, progress=False, console=console)
    recipe = json.loads((result.run_dir / "checkpoints" / "recipe.json").read_text())
    assert recipe["name"] == "head+finetune" and "about 1 passes at" in recipe["reason"]
    # the probe's steps are timed on a second run through its batches: every timed step at a length already seen;
    # then on one thread, and the faster thread count fine-tunes (the head trains on one thread anyway)
    (batches, warmup, other_threads), = probed
    assert warmup == len(batches) // 2 == 3 and all(a is b for a, b in zip(batches[:warmup], batches[warmup:]))
    assert other_threads == (1,) and "texts/s measured on 1 thread)" in recipe["reason"]
    assert recipe["throughput"]["threads"] == 1 and phase_threads == {"head": None, "finetune": 1}
    plan = json.loads((result.run_dir / "checkpoints" / "finetune" / "plan.json").read_text())
    assert plan["rounds"] == 1 and plan["passes"] == 1.0 and plan["batches_per_round"] == 3  # 24 texts, batches of 8
    phases = [row["phase"] for row in csv.DictReader((result.run_dir / "metrics.csv").open())]
    assert phases == ["head", "finetune"]
    assert "finetune: 1 passes over 24 inputs in 1 epochs of 3 batches" in console.export_text()

    def measure_again(*args):
        raise AssertionError("a resumed run follows its recipe.json and plan.json instead of measuring again")

    monkeypatch.setattr(type(get_modality("text")), "throughput", measure_again)
    again = Console(record=True, width=300)
    resumed = resume_training(result.run_dir, console=again, progress=False)
    assert "finetune: 1 passes over 24 inputs in 1 epochs of 3 batches" in again.export_text()
    assert resumed.report.mAP == pytest.approx(result.report.mAP)


def test_features_give_embeddings_in_text_order_from_one_pass(predictor):
    texts = ["a storm is coming tonight", "ok", "we cooked pasta with garlic and fresh bread for lunch"]
    probs, features, kept, errors = predictor.modality.features(predictor, texts)
    assert kept == [0, 1, 2] and errors == {}
    np.testing.assert_allclose(features, encode_texts(predictor.model.backbone, texts).numpy(), atol=1e-5)
    np.testing.assert_allclose(probs, predictor.predict_proba(texts), atol=1e-6)


def test_token_limit_comes_from_the_training_texts_and_travels_with_the_artifact(text_run, predictor, tmp_path):
    from tagnet.inference.export import export_onnx
    from tagnet.models.text import token_limit

    result, val = text_run
    train_texts = [line.split("\t")[0] for line in (val.parent / "train.tsv").read_text().splitlines()]
    encoder = create_model("minilm_l6", num_labels=3).backbone
    expected = token_limit(encoder.token_counts(train_texts))
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    assert meta["input"]["max_tokens"] == expected == predictor.model.backbone.max_tokens
    assert expected < 256 and expected % 8 == 0
    long_text = " ".join(["pizza"] * 400)
    assert len(predictor.model.backbone.tokenize([long_text])[0]) == expected  # prediction truncates there
    folder = tmp_path / "artifact"
    shutil.copytree(result.artifact_dir, folder)
    export_onnx(folder)
    tokenizer = json.loads((folder / "model.tokenizer.json").read_text())
    assert tokenizer["truncation"]["max_length"] == expected


def test_thresholds_never_see_the_rows_that_chose_the_epoch(text_run):
    """--val's rows parted into early-stopping and threshold rows (threshold_share 0.7): the kept phase's best
    validation mAP is the early-stopping rows' alone, the thresholds are fitted on the others, the report scores them
    on the early-stopping rows, and metrics.json has that honest estimate beside the optimistic one; --loss auto's
    choice is recorded and is its probe's best."""
    from tagnet.decisions.thresholds import fit_decisions
    from tagnet.evaluation.metrics import mean_average_precision
    from tagnet.training.run_folder import read_validation_predictions
    from tagnet.training.validation import threshold_slice

    result, val = text_run
    names, _, truths, probs = read_validation_predictions(result.run_dir / "val_predictions.csv")
    targets, known = (truths > 0).astype(np.float32), truths >= 0
    stop, kept = threshold_slice(np.r_[targets, targets], np.r_[known, known], [(np.arange(24), np.arange(24, 48))],
                                 share=0.7, seed=0)
    stop, kept = stop - 24, kept - 24  # the --val file's rows follow the training file's 24
    assert (len(stop), len(kept)) == (7, 17) and len(np.intersect1d(stop, kept)) == 0
    epochs = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    phase = "finetune" if meta["extra"]["finetuned"] else "head"
    best = max(float(row["val_mAP"]) for row in epochs if row["phase"] == phase)
    assert best == pytest.approx(mean_average_precision(targets[stop], probs[stop], known[stop]), abs=1e-4)
    fitted = fit_decisions(targets[kept], probs[kept], objective="f1", known=known[kept]).thresholds
    np.testing.assert_allclose(result.thresholds.values, fitted.values, atol=1e-5)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    honest = f1_score(targets[stop], probs[stop] >= np.asarray(fitted.values), average="macro", zero_division=0)
    assert metrics["validation"]["macro_f1"] == pytest.approx(honest, abs=1e-6)
    assert metrics["estimates"]["honest"]["macro_f1"] == pytest.approx(honest, abs=1e-6)
    own = fit_decisions(targets[stop], probs[stop], objective="f1", known=known[stop]).thresholds
    assert metrics["estimates"]["optimistic"]["macro_f1"] == pytest.approx(
        f1_score(targets[stop], probs[stop] >= np.asarray(own.values), average="macro", zero_division=0), abs=1e-6)
    choice = metrics["loss_choice"]
    assert choice == meta["extra"]["loss_choice"]
    assert choice["chosen"] == max(choice["scores"], key=choice["scores"].get)
    assert set(choice["scores"]) == {"bce", "weighted_bce", "asl"} and choice["rows"] == [24, 7]
    assert meta["config"]["loss"] == choice["chosen"]
    assert ("calibration" in metrics) == (choice["chosen"] != "bce")  # recalibrated for ASL or weighted BCE only


def test_an_asl_heads_probabilities_are_recalibrated_on_the_threshold_rows_in_the_model(text_run, tmp_path):
    """ASL trades calibration for ranking: the head's per-label Platt maps, fitted on the 17 threshold rows, are folded
    into its last layer, said and recorded; val_predictions.csv holds the mapped probabilities, which the loaded
    artifact reproduces, and the recorded calibration error after is theirs on the 7 early-stopping rows."""
    from tagnet.decisions.calibration import ece
    from tagnet.training.run_folder import read_validation_predictions
    from tagnet.training.validation import threshold_slice

    _, val = text_run
    options = {"no_header": True, "label_names_file": val.parent / "labels.txt", "id_column": "2"}
    config = TrainConfig(epochs=8, lr=3e-2, batch_size=24, finetune=False, loss="asl", precision="32-true")
    console = Console(record=True, width=300)
    result = train_run(val.parent / "train.tsv", modality="text", text_column="0", val_labels=val,
                       out_dir=tmp_path / "run", config=config, read_options=options, progress=False, console=console)
    record = json.loads((result.run_dir / "metrics.json").read_text())["calibration"]
    assert {k: record[k] for k in ("method", "loss", "fitted_on_rows", "scored_on_rows")} == {
        "method": "platt", "loss": "asl", "fitted_on_rows": 17, "scored_on_rows": 7}
    assert (f"probabilities recalibrated (asl trades calibration for ranking): per-label Platt scaling fitted on the "
            f"17 threshold rows, folded into the last layer; calibration error on the 7 early-stopping rows "
            f"{record['ece_before']:.3f} -> {record['ece_after']:.3f}") in console.export_text()
    assert record["ece_before"] != record["ece_after"]  # the maps moved the probabilities
    _, _, truths, probs = read_validation_predictions(result.run_dir / "val_predictions.csv")
    texts = [line.split("\t")[0] for line in val.read_text().splitlines()]
    np.testing.assert_allclose(Predictor(result.run_dir).predict_proba(texts), probs, atol=1e-4)
    stop, _ = threshold_slice(np.r_[truths, truths] > 0, np.r_[truths, truths] >= 0,
                              [(np.arange(24), np.arange(24, 48))], share=0.7, seed=0)
    stop = stop - 24  # the --val file's rows follow the training file's 24
    assert record["ece_after"] == pytest.approx(float(np.nanmean(ece(truths[stop] > 0, probs[stop]))), abs=1e-4)
    assert json.loads((result.artifact_dir / "tagnet.json").read_text())["extra"]["calibration"] == record


def test_fine_tuning_from_the_start_probes_the_loss_on_embeddings_of_its_rows(text_run, tmp_path, monkeypatch):
    """More texts than head_first_up_to fine-tune from the start: --loss auto's probe embeds the training and
    early-stopping rows itself (no frozen pass) and the fine-tuning trains with the winner."""
    import dataclasses

    from tagnet.modalities.specs import TEXT

    _, val = text_run
    kind = get_modality("text")
    monkeypatch.setattr(type(kind), "spec", dataclasses.replace(TEXT, head_first_up_to=10))
    options = {"no_header": True, "label_names_file": val.parent / "labels.txt", "id_column": "2"}
    config = TrainConfig(epochs=1, lr=3e-2, batch_size=8, precision="32-true")
    console = Console(record=True, width=300)
    result = train_run(val.parent / "train.tsv", modality="text", text_column="0", val_labels=val,
                       out_dir=tmp_path / "run", config=config, read_options=options, progress=False, console=console)
    assert json.loads((result.run_dir / "checkpoints" / "recipe.json").read_text())["name"] == "finetune"
    assert [row["phase"] for row in csv.DictReader((result.run_dir / "metrics.csv").open())] == ["finetune"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    choice = metrics["loss_choice"]
    assert choice["rows"] == [24, 7] and choice["chosen"] == max(choice["scores"], key=choice["scores"].get)
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    assert meta["config"]["loss"] == choice["chosen"]
    said = console.export_text()
    assert f"loss: {choice['chosen']} (the best of 3 heads" in said
    honest, optimistic = metrics["estimates"]["honest"], metrics["estimates"]["optimistic"]
    assert (f"thresholds fitted on 17 held-out rows apart from the 7 that chose the epoch; on those: macro-F1 "
            f"{honest['macro_f1']:.4f}") in said and f"would claim {optimistic['macro_f1']:.4f}" in said
