"""Tests of growing a run's label space (`tagnet train NEW_LABELS --from RUN`, tagnet.training.growth)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from tagnet.cli import app
from tagnet.config.settings import TrainConfig
from tagnet.errors import ConfigError, DataError
from tagnet.inference.artifact import load_artifact
from tagnet.inference.predictor import Predictor
from tagnet.models import GrownHead
from tagnet.training.trainer import resume_training, train

runner = CliRunner()
RNG = np.random.default_rng(0)
X = RNG.normal(size=(240, 4))
LABELS = {"a": X[:, 0] > 0, "b": X[:, 1] > 0.3, "c": X[:, 2] + X[:, 3] > 0.2, "d": X[:, 3] < -0.5}


def write_table(path: Path, names: list[str], rows, *, values: dict[str, np.ndarray] | None = None) -> Path:
    """A CSV feature table as pandas writes one: id, x0..x3, then 0/1 label columns."""
    values = {**LABELS, **(values or {})}
    lines = ["id,x0,x1,x2,x3," + ",".join(names)]
    lines += [f"r{i}," + ",".join(f"{v:.5f}" for v in X[i]) + "," + ",".join(str(int(values[n][i])) for n in names)
              for i in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def table_run(tmp_path: Path, select: str, *, objective: str = "hamming") -> Path:
    """A table run on labels a, b of rows 0..199 (the head as --select says)."""
    labels = write_table(tmp_path / f"old-{select}.csv", ["a", "b"], range(200))
    out = tmp_path / f"parent-{select}"
    train(labels, out_dir=out, tabular=True, read_options={"id_column": "id", "label_columns": ["a", "b"]},
          config=TrainConfig(select=select, epochs=3, objective=objective), progress=False)
    return out


def grow_table(labels: Path, parent: Path, out: Path, names: list[str], **kwargs):
    return train(labels, out_dir=out, tabular=True, read_options={"id_column": "id", "label_columns": names},
                 from_run=parent, progress=False, **kwargs)


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def probabilities(run: Path, rows) -> np.ndarray:
    return Predictor(run, runtime="torch").predict_proba([X[i] for i in rows])


@pytest.mark.parametrize("select", ["linear", "mlp"])
def test_new_label_learned_and_untouched_labels_identical(tmp_path, select):
    parent = table_run(tmp_path, select)
    before = folder_digest(parent)
    new = write_table(tmp_path / "new.csv", ["a", "b", "c"], range(200))
    result = grow_table(new, parent, tmp_path / "grown", ["a", "b", "c"])
    rows = range(240)  # 40 rows neither run saw
    old, grown = probabilities(parent, rows), probabilities(result.run_dir, rows)
    assert Predictor(result.run_dir).label_names == ["a", "b", "c"]
    head = load_artifact(result.run_dir).model.head
    assert isinstance(head, GrownHead) and head.base_labels == 2 and head.take.tolist() == [0, 1, 2]
    assert np.array_equal(old, grown[:, :2])  # bit for bit
    assert average_precision_score(LABELS["c"][200:], grown[200:, 2]) > 0.9  # chance: the share of positives, ~0.4
    assert folder_digest(parent) == before  # the parent run is kept as it was
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    sha = hashlib.sha256((parent / "artifact" / "tagnet.json").read_bytes()
                         + (parent / "artifact" / "model.safetensors").read_bytes()).hexdigest()
    recorded = {"run": str(parent.resolve()), "artifact_sha256": sha}
    assert meta["extra"]["growth"]["parent"] == recorded
    assert json.loads((result.run_dir / "run.json").read_text())["parent"] == recorded
    assert meta["extra"]["growth"]["new_labels"] == ["c"] and meta["extra"]["growth"]["refitted_labels"] == []


def test_label_with_new_examples_is_refitted_others_untouched(tmp_path):
    parent = table_run(tmp_path, "mlp", objective="f1")
    flipped = LABELS["b"].copy()
    flipped[:60] = ~flipped[:60]  # b's values change on 60 rows the parent trained on
    new = write_table(tmp_path / "new.csv", ["a", "b"], range(200), values={"b": flipped})
    result = grow_table(new, parent, tmp_path / "grown", ["a", "b"])
    growth = json.loads((result.artifact_dir / "tagnet.json").read_text())["extra"]["growth"]
    assert growth["refitted_labels"] == ["b"] and growth["new_labels"] == [] and growth["new_inputs"] == 0
    old, grown = probabilities(parent, range(240)), probabilities(result.run_dir, range(240))
    assert np.array_equal(old[:, 0], grown[:, 0]) and not np.allclose(old[:, 1], grown[:, 1])
    before, after = load_artifact(parent).thresholds, load_artifact(result.run_dir).thresholds
    assert before.mode == after.mode == "per-label" and after.values[0] == before.values[0]


def test_table_without_ids_is_matched_by_its_feature_values_not_row_numbers(tmp_path):
    def without_ids(path: Path, names: list[str], rows) -> Path:
        lines = write_table(path, names, rows).read_text().splitlines()
        path.write_text("\n".join(line.split(",", 1)[1] for line in lines) + "\n", encoding="utf-8")
        return path

    parent = tmp_path / "parent"
    train(without_ids(tmp_path / "old.csv", ["a", "b"], range(200)), out_dir=parent, tabular=True,
          read_options={"label_columns": ["a", "b"]}, config=TrainConfig(select="linear", epochs=3), progress=False)
    new = without_ids(tmp_path / "new.csv", ["a", "b", "c"], range(199, -1, -1))  # the same rows, reversed
    result = train(new, out_dir=tmp_path / "grown", tabular=True, read_options={"label_columns": ["a", "b", "c"]},
                   from_run=parent, progress=False)
    growth = json.loads((result.artifact_dir / "tagnet.json").read_text())["extra"]["growth"]
    # the 200 rows the parent saw are found in another order with the same a and b (matched by row number, a and b
    # would seem to have changed and be refitted)
    assert growth["new_inputs"] == 0 and growth["refitted_labels"] == [] and growth["new_labels"] == ["c"]
    rows = range(240)
    assert np.array_equal(Predictor(parent, runtime="torch").predict_proba([X[i] for i in rows]),
                          Predictor(result.run_dir, runtime="torch").predict_proba([X[i] for i in rows])[:, :2])


def test_grown_twice_with_new_rows(tmp_path):
    parent = table_run(tmp_path, "mlp")
    first = grow_table(write_table(tmp_path / "c.csv", ["c"], range(200)), parent, tmp_path / "g1", ["c"])
    # rows 200..239 are new: their d and c values train d (new) and refit c; a and b stay
    second = grow_table(write_table(tmp_path / "d.csv", ["c", "d"], range(120, 240)), first.run_dir, tmp_path / "g2",
                        ["c", "d"])
    growth = json.loads((second.artifact_dir / "tagnet.json").read_text())["extra"]["growth"]
    assert growth == {**growth, "new_labels": ["d"], "refitted_labels": ["c"], "new_inputs": 40, "reused_inputs": 200}
    model = load_artifact(second.run_dir).model
    assert isinstance(model.head, GrownHead) and model.head.base_labels == 2 and model.head.extra[1].out_features == 2
    p1, p2 = probabilities(first.run_dir, range(240)), probabilities(second.run_dir, range(240))
    assert np.array_equal(p1[:, :2], p2[:, :2])
    assert average_precision_score(LABELS["d"], p2[:, 3]) > 0.9


def test_interrupted_grown_run_resumes_from_its_parent(tmp_path):
    parent = table_run(tmp_path, "linear")
    new = write_table(tmp_path / "new.csv", ["a", "b", "c"], range(200))
    result = grow_table(new, parent, tmp_path / "grown", ["a", "b", "c"], config=TrainConfig(seed=3))
    before = probabilities(result.run_dir, range(240))
    (result.artifact_dir / "tagnet.json").unlink()  # interrupted before its artifact was written
    resumed = resume_training(result.run_dir, progress=False)  # the grown run's settings (epochs...) are its parent's
    assert json.loads((resumed.run_dir / "config.json").read_text())["seed"] == 3
    assert np.array_equal(probabilities(resumed.run_dir, range(240)), before)


def test_refusals_are_one_line(tmp_path, image_parent):
    parent = table_run(tmp_path, "linear")
    new = write_table(tmp_path / "new.csv", ["a", "b", "c"], range(200))
    cases = [
        (ConfigError, "not a finished run", lambda: grow_table(new, tmp_path, tmp_path / "g", ["a", "b", "c"])),
        (ConfigError, "expected the same modality",
         lambda: grow_table(new, image_parent[0], tmp_path / "g", ["a", "b", "c"])),
        (ConfigError, "expected the same encoder",
         lambda: grow_table(new, parent, tmp_path / "g", ["a", "b", "c"], config=TrainConfig(backbone="minilm_l6"))),
        (ConfigError, "only backbone, cache_dir, seed",
         lambda: grow_table(new, parent, tmp_path / "g", ["a", "b", "c"], config=TrainConfig(epochs=7))),
        (DataError, "adds no label and no new example",
         lambda: grow_table(write_table(tmp_path / "same.csv", ["a", "b"], range(200)), parent, tmp_path / "g",
                            ["a", "b"])),
        (DataError, "shares no label and no input",
         lambda: grow_table(write_table(tmp_path / "other.csv", ["d"], range(200, 240)), parent, tmp_path / "g",
                            ["d"])),
        (ConfigError, "is the --from run", lambda: grow_table(new, parent, parent, ["a", "b", "c"])),
    ]
    for error, words, call in cases:
        with pytest.raises(error, match=words) as caught:
            call()
        assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def image_parent(tmp_path_factory):
    """80 PNG photos (32 px) of red or blue noise, bright or dim, and a seed_cnn run on the label "bright" alone;
    returns (run folder, images folder, items, which are red)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colours")
    (root / "images").mkdir()
    rng = np.random.default_rng(1)
    red, bright = np.arange(80) % 2 == 1, np.arange(80) // 2 % 2 == 1
    items = [f"{i:03d}.png" for i in range(80)]
    for item, is_red, is_bright in zip(items, red, bright):
        colour = np.array([200, 40, 40] if is_red else [40, 40, 200]) * (1.0 if is_bright else 0.5)
        pixels = np.clip(colour + rng.normal(0, 30, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / item)
    lines = ["image,labels"] + [f"{item},{'bright' if b else ''}" for item, b in zip(items, bright)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = ["image,labels"] + [f"{item},{' '.join(n for n, on in (('bright', b), ('red', r)) if on)}"
                                for item, b, r in zip(items, bright, red)]
    (root / "with-red.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=32, epochs=3, batch_size=16)
    train(root / "labels.csv", images_dir=root / "images", out_dir=root / "parent", config=config, progress=False)
    return root / "parent", root / "images", items, red


def test_image_run_grows_through_the_cli(tmp_path, image_parent):
    parent, images, items, red = image_parent
    out = tmp_path / "grown"
    done = runner.invoke(app, ["train", str(images.parent / "with-red.csv"), "--from", str(parent), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"growing {parent}: 1 new label(s), 0 refitted, 1 untouched" in " ".join(done.output.split())
    paths = [images / item for item in items]
    old, grown = Predictor(parent).predict_proba(paths), Predictor(out).predict_proba(paths)
    assert Predictor(out).label_names == ["bright", "red"]
    assert np.array_equal(old, grown[:, :1])
    # chance is 0.5; the head trains 3 epochs (the parent's settings) on 64 photos, on features that learned brightness
    assert average_precision_score(red, grown[:, 1]) > 0.75
    assert "--from" in runner.invoke(app, ["train", "--help"]).output


WEATHER = ["sunny skies all day", "heavy rain tonight", "a cold windy morning", "snow falls on the hills",
           "thunder and lightning", "warm sunshine at noon", "fog over the river", "a light drizzle"]
OTHER = ["the meeting starts at nine", "my phone needs charging", "the train was late", "new shoes for school",
         "a book about history", "the printer is broken", "we painted the fence", "a quiet office"]
FOOD = ["pasta with tomato sauce", "fresh bread and butter", "a bowl of soup", "grilled fish and rice",
        "chocolate cake for dessert", "an apple and a pear"]


def test_text_run_reuses_its_embeddings_and_learns_a_new_label(tmp_path, monkeypatch):
    texts = [f"{t} {n}" for n in range(2) for t in WEATHER + OTHER]  # 32 texts the parent sees
    old = "".join(f"{t},{int(i % 16 < 8)}\n" for i, t in enumerate(texts))
    (tmp_path / "old.csv").write_text("text,weather\n" + old)
    config = TrainConfig(epochs=3, finetune=False, batch_size=8)
    train(tmp_path / "old.csv", out_dir=tmp_path / "parent", text_column="text", config=config, progress=False)
    food = [f"{t} {n}" for n in range(2) for t in FOOD]  # 12 new texts: food known, weather unknown (empty)
    rows = [f"{t},{int(i % 16 < 8)},{int(t.split()[0] in ('pasta', 'fresh'))}" for i, t in enumerate(texts)]
    rows += [f"{t},,1" for t in food]
    (tmp_path / "new.csv").write_text("text,weather,food\n" + "\n".join(rows) + "\n")
    from tagnet.models import text as text_models

    encoded = []
    encode = text_models.encode_texts
    monkeypatch.setattr(text_models, "encode_texts", lambda encoder, batch, **kw: encoded.append(list(batch)) or
                        encode(encoder, batch, **kw))
    result = train(tmp_path / "new.csv", out_dir=tmp_path / "grown", from_run=tmp_path / "parent", progress=False)
    assert encoded == [food]  # the parent's 32 embeddings were read from its cache
    parent_loss = json.loads((tmp_path / "parent" / "metrics.json").read_text())["loss_choice"]["chosen"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert "loss_choice" not in metrics  # --loss auto is not probed again: the parent's choice is kept
    assert json.loads((result.artifact_dir / "tagnet.json").read_text())["config"]["loss"] == parent_loss
    growth = json.loads((result.artifact_dir / "tagnet.json").read_text())["extra"]["growth"]
    assert growth["new_labels"] == ["food"] and growth["refitted_labels"] == [] and growth["new_inputs"] == 12
    probe = WEATHER[:3] + OTHER[:3] + ["a plate of pasta", "bread and soup"]
    old, grown = Predictor(tmp_path / "parent").predict_proba(probe), Predictor(result.run_dir).predict_proba(probe)
    assert np.array_equal(old, grown[:, :1])
    assert grown[6:, 1].min() > grown[:6, 1].max()  # the food texts rank above the others


@pytest.mark.parametrize("setting, message", [
    ({"dp_epsilon": 8.0}, "trained with --dp-epsilon"),
    ({"hierarchy_separator": "/"}, "has a label hierarchy"),
])
def test_private_and_hierarchy_runs_are_not_grown(tmp_path, setting, message):
    names = ["a", "b"] if "dp_epsilon" in setting else ["top/a", "top/b"]
    labels = write_table(tmp_path / "old.csv", names, range(200),
                         values={name: LABELS[name[-1]] for name in names})
    parent = tmp_path / "parent"
    train(labels, out_dir=parent, tabular=True, read_options={"id_column": "id", "label_columns": names},
          config=TrainConfig(epochs=2, **setting), progress=False)
    new = write_table(tmp_path / "new.csv", names + ["c"], range(200), values={name: LABELS[name[-1]] for name in names})
    with pytest.raises(ConfigError, match=f"--from {parent}: .*{message}.*not supported") as raised:
        grow_table(new, parent, tmp_path / "grown", names + ["c"])
    assert "\n" not in str(raised.value)
