"""Tests of the model registry, the seed CNN, timm backbones and offline pretrained weights."""

from __future__ import annotations


import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_image
from torch import nn

from tagnet.errors import ModelError
from tagnet.models import PreprocessConfig, TagnetModel, create_model, head_members, list_models, set_backbone_trainable
from tagnet.models.pretrained import load_package_weights, package_state_dict, package_weights_path
from tagnet.models.weights import read_state_dict

SIZE = 64


pytestmark = pytest.mark.usefixtures("no_network")  # every test here must work offline


def _images(n: int = 2, size: int = SIZE) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("name", "num_features"),
    [("seed_cnn", 64), ("efficientnet_lite0", 1280), ("test_resnet", 96), ("test_vit", 64)],
)
@pytest.mark.parametrize("head_hidden", [0, 16])
def test_forward_shapes_and_feature_head_consistency(name, num_features, head_hidden):
    torch.manual_seed(0)
    model = create_model(name, num_labels=5, pretrained=False, image_size=SIZE, head_hidden=head_hidden).eval()
    x = _images(3)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        via_parts = model.forward_head(features)
    assert isinstance(model, TagnetModel)
    assert logits.shape == (3, 5)
    assert features.shape == (3, num_features) and model.num_features == num_features
    torch.testing.assert_close(logits, via_parts)
    assert model.spec == {"name": name, "num_labels": 5, "dropout": 0.2, "head_hidden": head_hidden}
    assert model.preprocess.image_size == SIZE
    linear_layers = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear_layers] == (
        [(num_features, 16), (16, 5)] if head_hidden else [(num_features, 5)]
    )


def test_spec_and_image_state_rebuild_the_same_architecture():
    from tagnet import modalities

    model = create_model("seed_cnn", num_labels=3, dropout=0.3, head_hidden=8, image_size=40)
    rebuilt = modalities.get("image").rebuild_model(model.spec, model.preprocess.to_dict(), source="test")
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert rebuilt.spec == model.spec and rebuilt.head[2].p == 0.3


def test_ensemble_head_outputs_the_logit_of_the_members_mean_probability():
    torch.manual_seed(0)
    model = create_model("mlp", num_labels=3, head_hidden=8, input_dim=5, ensemble=4).eval()
    assert model.spec["ensemble"] == 4 and "ensemble" not in create_model("mlp", num_labels=3, input_dim=5).spec
    members = head_members(model)
    assert len(members) == 4 and len({id(m) for m in members}) == 4
    assert not torch.equal(members[0][0].weight, members[1][0].weight)  # initialised independently
    x = torch.randn(6, 5)
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m(x)) for m in members]).mean(0)
        np.testing.assert_allclose(torch.sigmoid(model(x)).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    rebuilt = create_model(**model.spec, input_dim=5)  # the input width is the tabular state's feature count
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.spec == model.spec


def test_seed_cnn_matches_the_article_network():
    model = create_model("seed_cnn", num_labels=4)
    assert model.preprocess == PreprocessConfig(image_size=150, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    layers = list(model.backbone.features) + [model.backbone.flatten] + list(model.backbone.dense)
    assert [type(m) for m in layers] == [
        nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear, nn.ReLU
    ]
    conv1, conv2, dense = layers[0], layers[3], layers[7]
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (3, 32, (3, 3))
    assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size) == (32, 64, (3, 3))
    assert layers[2].kernel_size == 2 and layers[5].kernel_size == 2
    # 150 -> conv 148 -> pool 74 -> conv 72 -> pool 36: 64 * 36 * 36 inputs to the 64-unit dense layer.
    assert (dense.in_features, dense.out_features) == (64 * 36 * 36, 64)
    assert [type(m) for m in model.head] == [nn.Dropout, nn.Linear] and model.head[0].p == 0.2
    assert model.head[1].out_features == 4


def test_seed_cnn_is_channels_last_friendly_and_ignores_pretrained():
    torch.manual_seed(0)
    model = create_model("seed_cnn", num_labels=2, pretrained=True, image_size=SIZE).eval()
    x = _images(2)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected)


def test_seed_cnn_rejects_too_small_images():
    with pytest.raises(ModelError, match="seed_cnn image_size is 8; expected at least 10"):
        create_model("seed_cnn", num_labels=2, image_size=8)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("seed-cnn", "did you mean seed_cnn"), ("efficientnet_lite", "did you mean efficientnet_lite2, efficientnet_lite1, efficientnet_lite0"), ("resnt18", "resnet18")],
)
def test_unknown_name_suggests_close_names(name, suggestion):
    with pytest.raises(ModelError, match=f"unknown model '{name}'") as caught:
        create_model(name, num_labels=2)
    assert suggestion in str(caught.value)


def test_unknown_timm_tag_lists_valid_tags():
    with pytest.raises(ModelError, match="no config tag 'foo'.*resnet18.a1_in1k"):
        create_model("resnet18.foo", num_labels=2, pretrained=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_labels": 0}, "num_labels is 0; expected an integer from 1 to 100000"),
        ({"num_labels": 2, "dropout": 1.0}, r"dropout is 1.0; expected a number in \[0, 1\)"),
        ({"num_labels": 2, "head_hidden": -1}, "head_hidden is -1"),
        ({"num_labels": 2, "image_size": 0}, "image_size is 0"),
        ({"num_labels": 2, "ensemble": 0}, "ensemble is 0; expected an integer from 1 to 100"),
    ],
)
def test_bad_arguments_are_model_errors(kwargs, message):
    with pytest.raises(ModelError, match=message):
        create_model("seed_cnn", **kwargs)


def test_list_models_gives_own_models_first_then_timm():
    names = list_models()
    assert names[:6] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "minilm_l6", "mlp", "seed_cnn"]
    assert "resnet18" in names and names.count("efficientnet_lite0") == 1
    assert list_models("seed*") == ["seed_cnn"]
    resnets = list_models("resnet1?")
    assert "resnet18" in resnets and all(name.startswith("resnet1") and len(name) == 8 for name in resnets)


def test_timm_model_without_weights_file_asks_for_one():
    with pytest.raises(ModelError, match=r"model 'test_resnet' has no built-in offline weights.*--weights FILE"):
        create_model("test_resnet", num_labels=2)


def test_timm_preprocess_comes_from_its_config():
    model = create_model("resnet18", num_labels=2, pretrained=False)
    assert model.preprocess == PreprocessConfig(image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert create_model("resnet18", num_labels=2, pretrained=False, image_size=96).preprocess.image_size == 96


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_roundtrip(tmp_path, suffix):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=10).eval()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    model = create_model("test_resnet", num_labels=3, weights=path, image_size=SIZE).eval()
    backbone_state = model.backbone.state_dict()
    assert len(backbone_state) == len(source.state_dict()) - 2  # fc.weight and fc.bias were dropped
    for key, tensor in backbone_state.items():
        torch.testing.assert_close(tensor, source.state_dict()[key])
    x = _images(2)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model.forward_features(x), expected)


def test_weights_for_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "convnext.safetensors"
    safetensors.torch.save_file(timm.create_model("test_convnext", pretrained=False).state_dict(), path)
    with pytest.raises(ModelError, match=r"do not fit the ResNet backbone: \d+ missing \(.*\); \d+ unexpected"):
        create_model("test_resnet", num_labels=2, weights=path)


def test_weights_with_other_shapes_are_rejected(tmp_path):
    state = timm.create_model("test_resnet", pretrained=False).state_dict()
    state["conv1.0.weight"] = torch.zeros(1, 3, 3, 3)
    path = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(ModelError, match=r"1 with another shape \(conv1.0.weight \(file \(1, 3, 3, 3\), model"):
        create_model("test_resnet", num_labels=2, weights=path)


def test_weights_file_with_code_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "hook": print}, path)
    with pytest.raises(ModelError, match="weights_only=True"):
        create_model("test_resnet", num_labels=2, weights=path)


def test_weights_file_errors_name_the_file(tmp_path):
    with pytest.raises(ModelError, match="missing.pth does not exist"):
        create_model("test_resnet", num_labels=2, weights=tmp_path / "missing.pth")
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="broken.safetensors is not a readable safetensors file"):
        create_model("test_resnet", num_labels=2, weights=path)
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ModelError, match="holds a list; expected a flat dict"):
        create_model("test_resnet", num_labels=2, weights=path)


def test_efficientnet_lite0_loads_all_package_tensors_in_order():
    model = create_model("efficientnet_lite0", num_labels=4)
    assert model.preprocess == PreprocessConfig(image_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    source = list(read_state_dict(package_weights_path()).values())
    assert len(source) == 296
    backbone = list(model.backbone.state_dict().values())
    assert len(backbone) == 294
    for package_tensor, loaded in zip(source, backbone):
        assert torch.equal(package_tensor, loaded)
    fresh = create_model("efficientnet_lite0", num_labels=4, pretrained=False)
    assert load_package_weights(fresh.backbone) == 294
    stem = model.backbone.conv_stem.weight
    assert not torch.equal(stem, create_model("efficientnet_lite0", num_labels=4, pretrained=False).backbone.conv_stem.weight)


def test_efficientnet_lite0_features_differ_from_random_init():
    x = _images(2)
    pretrained = create_model("efficientnet_lite0", num_labels=2, image_size=SIZE).eval()
    torch.manual_seed(0)
    random = create_model("efficientnet_lite0", num_labels=2, pretrained=False, image_size=SIZE).eval()
    with torch.no_grad():
        a, b = pretrained.forward_features(x * 2 - 1), random.forward_features(x * 2 - 1)
    assert a.shape == b.shape == (2, 1280)
    assert not torch.allclose(a, b, atol=1e-3)
    assert (a >= 0).all()  # pooled after ReLU6


def _imagenet_input(name: str) -> torch.Tensor:
    image = Image.fromarray(load_sample_image(name))
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    return ((x - 0.5) / 0.5).unsqueeze(0)  # the package's weights expect [-1, 1]


def test_package_classifier_recognises_imagenet_photos():
    """The mapped weights, classifier included, classify scikit-learn's sample photos as ImageNet would."""
    classifier = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    classifier.load_state_dict(package_state_dict())
    x = torch.cat([_imagenet_input("china.jpg"), _imagenet_input("flower.jpg")])
    with torch.no_grad():
        top = classifier(x).topk(3).indices.tolist()
    assert top[0][0] == 698  # palace
    assert 985 in top[1]  # daisy


def test_set_backbone_trainable_freezes_only_the_backbone():
    model = create_model("seed_cnn", num_labels=2, image_size=SIZE)
    set_backbone_trainable(model, False)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())


def test_preprocess_config_roundtrip_and_errors():
    config = PreprocessConfig(image_size=96, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert config.to_dict() == {"image_size": 96, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ModelError, match="lack the key 'std'"):
        PreprocessConfig.from_dict({"image_size": 96, "mean": [0, 0, 0]})
    with pytest.raises(ModelError, match=r"mean is \[0, 0\]; expected three numbers"):
        PreprocessConfig.from_dict({"image_size": 96, "mean": [0, 0], "std": [1, 1, 1]})
    with pytest.raises(ModelError, match="std is .*expected three positive numbers"):
        PreprocessConfig.from_dict({"image_size": 96, "mean": [0, 0, 0], "std": [1, 0, 1]})
    with pytest.raises(ModelError, match="image_size is '96'"):
        PreprocessConfig.from_dict({"image_size": "96", "mean": [0, 0, 0], "std": [1, 1, 1]})


@pytest.mark.parametrize(("name", "size", "tensors"), [("efficientnet_lite1", 240, 386), ("efficientnet_lite2", 260, 386)])
def test_efficientnet_lite1_and_lite2_load_their_packages_in_order(name, size, tensors):
    model = create_model(name, num_labels=2)
    assert model.preprocess == PreprocessConfig(image_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    source = list(read_state_dict(package_weights_path(name)).values())
    backbone = list(model.backbone.state_dict().values())
    assert len(source) == tensors and len(backbone) == tensors - 2  # the package's classifier weight and bias dropped
    assert all(torch.equal(a, b) for a, b in zip(source, backbone))


def test_fused_backbone_concatenates_its_members_features_at_one_size():
    fused = create_model("efficientnet_lite0+efficientnet_lite2", num_labels=3).eval()
    assert fused.num_features == 2560 and fused.preprocess.image_size == 260  # the larger native size
    assert fused.backbone.names == ["efficientnet_lite0", "efficientnet_lite2"]
    lite0, lite2 = (create_model(name, num_labels=3, image_size=SIZE).eval() for name in fused.backbone.names)
    x = _images(2) * 2 - 1
    with torch.no_grad():
        expected = torch.cat([lite0.forward_features(x), lite2.forward_features(x)], dim=1)
        assert torch.allclose(fused.forward_features(x), expected, atol=1e-5)
        assert fused(x).shape == (2, 3)
    assert create_model("efficientnet_lite0+efficientnet_lite2", num_labels=3, image_size=96,
                        pretrained=False).preprocess.image_size == 96


@pytest.mark.parametrize(("name", "message"), [
    ("efficientnet_lite0+seed_cnn", "fused backbones must take the same input"),
    ("efficientnet_lite0++efficientnet_lite2", "has an empty part"),
    ("efficientnet_lite0+efficientnet_lite0", "names a backbone twice"),
    ("efficientnet_lite0+minilm_l6", "does not take images"),
    ("efficientnet_lite0+nosuchnet", "unknown model 'nosuchnet'"),
])
def test_fused_backbone_errors_are_one_line(name, message):
    with pytest.raises(ModelError, match=message):
        create_model(name, num_labels=2, pretrained=False)


def test_frozen_batch_norm_keeps_the_backbone_statistics_in_training_mode():
    model = create_model("efficientnet_lite0", num_labels=2, pretrained=False, image_size=SIZE)
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    before = norms[0].running_mean.clone()
    model.batch_norm_frozen = True
    model.train()
    assert model.training and model.head.training and not any(m.training for m in norms)
    model(_images(4))
    assert torch.equal(norms[0].running_mean, before)
    model.batch_norm_frozen = False
    model.train()
    assert all(m.training for m in norms)
    model(_images(4))
    assert not torch.equal(norms[0].running_mean, before)
