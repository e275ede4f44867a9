"""Frozen image features: photos and mirror images in one pass with the next batches read ahead (bounded), equal to
the one-view path and to eager PyTorch, in input order; exported ONNX graphs kept in the user's cache folder."""

import copy
import re
import threading
import time
import types

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from tagnet.config.source import DataSource
from tagnet.data.images import ImageCache, build_image_cache, load_image, normalize_batch, prefetched
from tagnet.inference import runtime
from tagnet.inference.feature_cache import cached_path
from tagnet.modalities.base import HeadInputs
from tagnet.modalities.image import ImageModality, CachedImages, _feature_digest, extract_features, extract_views, member_views
from tagnet.models import create_model
from tagnet.training import stages

IMAGE_MODALITY = ImageModality()


@pytest.fixture(scope="module")
def images() -> CachedImages:
    """11 random 32 px images in an in-memory cache, rows taken out of order."""
    array = np.random.default_rng(0).integers(0, 256, size=(11, 32, 32, 3), dtype=np.uint8)
    cache = ImageCache(array, [], {}, key="synthetic")
    return CachedImages(cache, np.array([3, 0, 10, 7, 1, 2, 9, 4, 8, 6, 5]))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("seed_cnn", num_labels=3, pretrained=False, image_size=32)


def eager_one_by_one(model, images: CachedImages, flip: bool) -> np.ndarray:
    rows = []
    with torch.inference_mode():
        for row in images.rows:
            image = torch.from_numpy(np.array(images.cache.array[row:row + 1])).permute(0, 3, 1, 2)
            batch = normalize_batch(image.flip(-1) if flip else image, model.preprocess.mean, model.preprocess.std)
            rows.append(model.backbone(batch).float().numpy())
    return np.concatenate(rows)


def test_both_views_in_one_pass_equal_each_view_alone_and_eager_pytorch(model, images):
    photos, mirrors = extract_views(model.backbone, model.preprocess, images, batch_size=4, prefetch=2)
    alone = [extract_features(model.backbone, model.preprocess, images, batch_size=4, flip=flip) for flip in (0, 1)]
    for got, one_view, flip in zip((photos, mirrors), alone, (False, True)):
        want = eager_one_by_one(model, images, flip)  # in the rows' order, one image at a time
        assert got.shape == want.shape == (11, model.backbone.num_features)
        assert np.abs(got.numpy() - want).max() <= runtime.PARITY_TOLERANCE * max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got.numpy(), one_view.numpy(), atol=1e-5)
    assert not np.allclose(photos.numpy(), mirrors.numpy())  # the mirror images are other inputs


def test_the_read_ahead_depth_does_not_change_the_features(model, images):
    runs = [extract_views(model.backbone, model.preprocess, images, batch_size=3, prefetch=depth) for depth in (1, 4)]
    for first, second in zip(*runs):
        assert torch.equal(first, second)


def test_member_views_store_each_view_where_the_cache_expects_it(model, images, tmp_path):
    photos, mirrors = member_views("seed_cnn", model.backbone, model.preprocess, images, cache_dir=tmp_path)
    for flip, values in ((False, photos), (True, mirrors)):
        path = cached_path(tmp_path, "features", _feature_digest("seed_cnn", model.backbone, model.preprocess, images,
                                                                 flip))
        assert torch.equal(load_file(path)["values"], values)  # the same files and format as one view at a time
    path.unlink()  # only the mirror images missing: computed alone, the photos read from their file
    again = member_views("seed_cnn", model.backbone, model.preprocess, images, cache_dir=tmp_path)
    assert torch.equal(again[0], photos) and path.exists()
    np.testing.assert_allclose(again[1].numpy(), mirrors.numpy(), atol=1e-5)


def test_prefetched_keeps_the_order_and_at_most_depth_loads_ahead():
    lock, started, taken, most_ahead = threading.Lock(), [0], [0], [0]

    def load(chunk: int) -> int:
        with lock:
            started[0] += 1
            most_ahead[0] = max(most_ahead[0], started[0] - taken[0])
        return chunk * 10

    results = []
    for value in prefetched(load, range(12), depth=3):
        with lock:
            taken[0] += 1
        time.sleep(0.005)  # a slow consumer: the loads would run far ahead if nothing bounded them
        results.append(value)
    assert results == [chunk * 10 for chunk in range(12)]
    assert most_ahead[0] == 3


def test_prefetched_raises_a_failed_load_when_its_result_is_taken():
    def load(chunk: int) -> int:
        if chunk == 2:
            raise ValueError("bad chunk")
        return chunk

    got = []
    with pytest.raises(ValueError, match="bad chunk"):
        for value in prefetched(load, range(5), depth=2):
            got.append(value)
    assert got == [0, 1]
    with pytest.raises(ValueError, match="depth=0"):
        list(prefetched(load, range(3), depth=0))


def test_alongside_work_sees_each_row_decoded_once_ready_says_so(synthetic_data, tmp_path):
    paths = sorted(synthetic_data.images_dir.iterdir())[:20]
    seen = []

    def alongside(building: ImageCache) -> None:
        assert building.ready is not None
        for row in (0, 7, 19):
            building.ready(np.array([row]))
            seen.append(np.array(building.array[row]))

    built = build_image_cache(paths, size=24, cache_dir=tmp_path, workers=2, alongside=alongside)
    for row, image in zip((0, 7, 19), seen):
        np.testing.assert_array_equal(image, load_image(paths[row], 24))
        np.testing.assert_array_equal(built.array[row], image)
    assert built.ready is None
    # a cache already built is reused: nothing runs alongside
    build_image_cache(paths, size=24, cache_dir=tmp_path, alongside=lambda building: seen.append(None))
    assert len(seen) == 3


def test_features_computed_while_decoding_equal_those_computed_after(synthetic_data, tmp_path):
    table = synthetic_data.labels_csv.read_text().splitlines()
    labels = tmp_path / "labels.csv"  # row 7 names a missing file: dropped after decoding
    labels.write_text("\n".join([table[0], *table[1:8], f"missing.png,{table[1].split(',')[1]}", *table[8:14]]) + "\n")
    kind, source = IMAGE_MODALITY, DataSource(labels, images_dir=synthetic_data.images_dir)
    torch.manual_seed(0)
    model = create_model("seed_cnn", num_labels=3, pretrained=False, image_size=32)
    outputs = []
    for encode in (True, False):
        data = kind.read(source)
        prepared, kept = kind.prepare(data, model, cache_dir=tmp_path / f"cache-{encode}", encode=encode)
        assert list(kept) == [*range(7), *range(8, 14)]
        outputs.append(kind.head_inputs(model, prepared, {}, cache_dir=tmp_path / f"cache-{encode}", progress=False))
    early, late = outputs
    assert early.earlier_seconds > 0 and late.earlier_seconds == 0
    assert early.runtime == late.runtime == runtime.cpu_runtimes()[0]  # the fastest installed: openvino, onnxruntime
    again = kind.head_inputs(copy.deepcopy(model), prepared, {}, cache_dir=tmp_path / "cache-False", progress=False)
    assert again.runtime is None and torch.equal(again.values, late.values)  # read from the feature cache: nothing ran
    assert early.values.shape == late.values.shape == (13, model.backbone.num_features)
    np.testing.assert_allclose(early.values.numpy(), late.values.numpy(), atol=1e-5)
    np.testing.assert_allclose(early.augmented.numpy(), late.augmented.numpy(), atol=1e-5)


@pytest.mark.parametrize(("inputs", "notes"), [
    (HeadInputs(torch.zeros(2, 1), earlier_seconds=1.5, runtime="openvino"), " (on openvino, computed while decoding)"),
    (HeadInputs(torch.zeros(2, 1), runtime="onnxruntime"), " (on onnxruntime)"), (HeadInputs(torch.zeros(2, 1)), ""),
])
def test_the_phase_line_names_the_runtime_that_ran(inputs, notes):
    config = types.SimpleNamespace(backbone="efficientnet_lite0", devices="auto", strategy="auto", num_nodes=1)
    plan = types.SimpleNamespace(config=config, kind=types.SimpleNamespace(head_inputs=lambda *args, **kwargs: inputs))
    run = types.SimpleNamespace(plan=plan, model=None, data=[0, 1], state={}, cache_dir=None, progress=False,
                                console=Console(record=True, width=200))
    stages.frozen_outputs(run)
    line = run.console.export_text().strip()
    assert re.fullmatch(r"frozen efficientnet_lite0 outputs of 2 inputs ready in \d+\.\d s" + re.escape(notes), line)
    assert line.startswith("frozen efficientnet_lite0 outputs of 2 inputs ready in 1.5 s") == bool(inputs.earlier_seconds)
