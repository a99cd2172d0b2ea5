"""Architectures: real EfficientNet-Lite0 weights, torchvision-layout ResNets, UNet, digit CNN, strict loading.

The EfficientNet check pins TF-SAME padding: with it the real weights reproduce the MANIFEST's
reference probabilities (tench 0.8072, mud turtle 0.7992); symmetric padding gives 0.7675.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lensgraph.architectures import ARCHITECTURES, build_architecture
from lensgraph.architectures.efficientnet_lite import tf_same_pad
from lensgraph.architectures.resnet import TORCHVISION_WEIGHTS
from lensgraph.architectures.state_dict import load_state_dict_strict, load_weights_file
from lensgraph.errors import WeightsError, WeightsNotFound

LITE0_WEIGHTS = "imagenet/efficientnet-lite0-57934424.pth"


def _seeded_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with every float tensor filled from ``seed``: values differ from a fresh init."""
    generator = torch.Generator().manual_seed(seed)
    state = build_architecture(name).state_dict()
    return {k: torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone()
            for k, v in state.items()}


# ---------------------------------------------------------------- registry


def test_registry_lists_every_architecture_and_builds_by_name():
    assert set(ARCHITECTURES) == {"efficientnet_lite0", "resnet18", "resnet50", "landmark_unet", "digit_cnn"}
    kinds = {name: info.kind for name, info in ARCHITECTURES.items()}
    assert kinds["landmark_unet"] == "heatmap_landmarks" and kinds["digit_cnn"] == "digits"
    assert ARCHITECTURES["digit_cnn"].input_shape == (1, 28, 28)
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        build_architecture("vgg16")
    with pytest.raises(ValueError, match="bad arguments"):
        build_architecture("resnet18", widht=3)


def test_importing_lensgraph_and_the_registry_does_not_import_torch():
    code = "import sys, lensgraph, lensgraph.architectures; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- EfficientNet-Lite0


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),  # the MANIFEST's "pads 0 before and 1 after"
    (225, 3, 2, (1, 1)),
    (112, 5, 2, (1, 2)),
    (113, 5, 2, (2, 2)),
    (56, 3, 1, (1, 1)),
])
def test_tf_same_padding_matches_tensorflow(size, kernel, stride, expected):
    before, after = tf_same_pad(size, kernel, stride, 1)
    assert (before, after) == expected
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)  # out = ceil(size / stride)


def _imagenet_input(path: Path) -> torch.Tensor:
    """RGB, shorter side to 256 (PIL bilinear), centre crop 224, (x - 127) / 128, CHW."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = image.size
    left, top = round((w - 224) / 2), round((h - 224) / 2)
    pixels = np.array(image.crop((left, top, left + 224, top + 224)), dtype=np.float32)
    return (torch.from_numpy(pixels).permute(2, 0, 1) - 127.0) / 128.0


@pytest.fixture(scope="module")
def lite0(assets):
    model = build_architecture("efficientnet_lite0").eval()
    load_state_dict_strict(model, load_weights_file(assets / LITE0_WEIGHTS), source=LITE0_WEIGHTS)
    return model


def test_efficientnet_lite0_real_weights_match_the_reference_probabilities(assets, lite0):
    photos = ["n01440764_tench.JPEG", "n01667114_mud_turtle.JPEG"]
    x = torch.stack([_imagenet_input(assets / "imagenet" / p) for p in photos])
    with torch.inference_mode():
        logits = lite0(x)
        embedding = lite0.embed(x)
        from_embedding = lite0.classify(embedding)
    probs = torch.softmax(logits, dim=-1)
    assert probs.argmax(dim=-1).tolist() == [0, 35]
    assert float(probs[0, 0]) == pytest.approx(0.8072, abs=0.02)
    assert float(probs[1, 35]) == pytest.approx(0.7992, abs=0.02)
    assert float(probs[0, 0]) > 0.79  # symmetric padding gives 0.7675: this is what TF-SAME buys
    assert embedding.shape == (2, 1280)
    torch.testing.assert_close(from_embedding, logits, rtol=0, atol=1e-5)


def test_efficientnet_lite0_layout_and_declared_preprocessing(assets, lite0):
    state = load_weights_file(assets / LITE0_WEIGHTS)
    assert len(state) == 296 and set(state) == set(lite0.state_dict())
    assert sum(p.numel() for p in lite0.parameters()) == 4_652_008
    assert lite0.embedding_dim == 1280 and lite0.num_classes == 1000
    assert lite0.preprocessing["mean"] == [127.0] * 3 and lite0.preprocessing["std"] == [128.0] * 3
    assert (lite0.preprocessing["resize_shorter"], lite0.preprocessing["crop"]) == (256, 224)
    assert all(m.eps == 1e-3 for m in lite0.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(m.bias is None for m in lite0.modules() if isinstance(m, nn.Conv2d))


def test_efficientnet_lite0_takes_any_input_size_and_num_classes():
    model = build_architecture("efficientnet_lite0", num_classes=7).eval()
    with torch.inference_mode():
        for h, w in ((97, 130), (64, 64)):
            assert model(torch.randn(1, 3, h, w)).shape == (1, 7)


# ---------------------------------------------------------------- ResNet


@pytest.mark.parametrize("name, params, keys, dim", [
    ("resnet18", 11_689_512, 122, 512),
    ("resnet50", 25_557_032, 320, 2048),
])
def test_resnet_matches_torchvision_counts(name, params, keys, dim):
    model = build_architecture(name).eval()
    assert sum(p.numel() for p in model.parameters()) == params  # torchvision's published numbers
    assert len(model.state_dict()) == keys  # incl. num_batches_tracked (one per BatchNorm)
    assert model.embedding_dim == dim and model.num_classes == 1000
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        embedding = model.embed(x)
        assert embedding.shape == (2, dim)
        torch.testing.assert_close(model.classify(embedding), model(x), rtol=0, atol=1e-5)


def test_resnet_keys_and_shapes_are_torchvisions():
    r18 = build_architecture("resnet18").state_dict()
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer4.1.bn2.running_var",
            "layer3.0.downsample.0.weight", "layer3.0.downsample.1.num_batches_tracked", "fc.bias"} <= set(r18)
    assert "layer1.0.downsample.0.weight" not in r18  # 64 -> 64, stride 1: no shortcut conv
    assert tuple(r18["fc.weight"].shape) == (1000, 512)
    r50 = build_architecture("resnet50").state_dict()
    assert tuple(r50["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    assert tuple(r50["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(r50["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)
    model = build_architecture("resnet50")
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # v1.5


def test_resnet_preprocessing_and_torchvision_weight_table():
    r18, r50 = build_architecture("resnet18"), build_architecture("resnet50")
    assert r18.preprocessing["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert r18.preprocessing["std"] == pytest.approx([58.395, 57.12, 57.375])
    assert (r18.preprocessing["resize_shorter"], r18.preprocessing["crop"]) == (256, 224)
    assert (r50.preprocessing["resize_shorter"], r50.preprocessing["crop"]) == (232, 224)  # V2 recipe
    assert build_architecture("resnet50", recipe="resnet50_v1").preprocessing["resize_shorter"] == 256
    for entry in TORCHVISION_WEIGHTS.values():
        assert entry["url"].endswith(f"-{entry['sha256_prefix']}.pth")


def test_seeded_random_resnet_state_dict_round_trips(tmp_path):
    state = _seeded_state("resnet18", seed=3)
    torch.save(state, tmp_path / "r18.pth")
    model = build_architecture("resnet18")
    load_state_dict_strict(model, load_weights_file(tmp_path / "r18.pth"), source="r18.pth")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


# ---------------------------------------------------------------- strict loading


def test_a_wrong_state_dict_names_every_offending_key():
    state = _seeded_state("resnet18")
    state.pop("layer4.1.bn2.running_var")
    state["extra.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(build_architecture("resnet18"), state, source="bad.pth")
    message = info.value.message
    for text in ("layer4.1.bn2.running_var", "extra.weight", "fc.weight: expected [1000, 512], got [10, 512]",
                 "bad.pth", "1 missing key", "1 unexpected key", "1 mis-shaped key"):
        assert text in message, (text, message)
    assert info.value.detail["missing"] == ["layer4.1.bn2.running_var"]


def test_long_mismatch_lists_are_truncated_with_a_count():
    state = {f"junk.{i}": torch.zeros(1) for i in range(25)}
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(build_architecture("digit_cnn"), state)
    assert "25 unexpected keys" in info.value.message and "and 15 more" in info.value.message
    assert len(info.value.detail["unexpected"]) == 10


def test_wrapped_and_data_parallel_checkpoints_load():
    state = _seeded_state("digit_cnn", seed=1)
    for wrapped in ({"state_dict": state, "epoch": 3},
                    {"model": {f"module.{k}": v for k, v in state.items()}, "optimizer": "..."},
                    {f"module.{k}": v for k, v in state.items()}):
        model = build_architecture("digit_cnn")
        load_state_dict_strict(model, wrapped)
        assert torch.equal(model.state_dict()["head.fc2.weight"], state["head.fc2.weight"])


def test_legacy_checkpoint_without_num_batches_tracked_loads():
    state = {k: v for k, v in _seeded_state("resnet18").items() if not k.endswith("num_batches_tracked")}
    load_state_dict_strict(build_architecture("resnet18"), state)


def test_a_prefixed_checkpoint_gets_a_hint():
    state = {f"backbone.{k}": v for k, v in _seeded_state("digit_cnn").items()}
    with pytest.raises(WeightsError, match="'backbone.' prefix"):
        load_state_dict_strict(build_architecture("digit_cnn"), state)


def test_weight_file_errors_are_clear(tmp_path):
    with pytest.raises(WeightsNotFound, match="not found"):
        load_weights_file(tmp_path / "absent.pth")
    torch.save(build_architecture("digit_cnn"), tmp_path / "whole_module.pth")
    with pytest.raises(WeightsError, match=r"save model\.state_dict\(\)"):
        load_weights_file(tmp_path / "whole_module.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="expected a state dict"):
        load_weights_file(tmp_path / "list.pth")
    torch.save({"weights": torch.zeros(1), "epoch": 3}, tmp_path / "mixed.pth")
    with pytest.raises(WeightsError, match="not tensors"):
        load_weights_file(tmp_path / "mixed.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights_file(tmp_path / "garbage.pth")


# ---------------------------------------------------------------- UNet


@pytest.mark.parametrize("base_channels, depth", [(8, 1), (16, 3), (8, 5)])
def test_landmark_unet_maps_96x96_to_15_heatmaps(base_channels, depth):
    model = build_architecture("landmark_unet", base_channels=base_channels, depth=depth).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 1, 96, 96)).shape == (2, 15, 96, 96)


@pytest.mark.parametrize("depth", [6, 0, -1])
def test_landmark_unet_rejects_depths_that_do_not_divide_96(depth):
    with pytest.raises(ValueError, match="depth"):
        build_architecture("landmark_unet", depth=depth)


# ---------------------------------------------------------------- DigitCNN


def test_digit_cnn_shapes_determinism_and_where_dropout_lives():
    torch.manual_seed(0)
    model = build_architecture("digit_cnn", dropout=0.5)
    x = torch.randn(8, 1, 28, 28)
    assert not any(isinstance(m, nn.Dropout) for m in model.features.modules())
    assert sum(isinstance(m, nn.Dropout) for m in model.head.modules()) == 2
    assert model.dropout_p == 0.5 and (model.mean, model.std) == (0.1307, 0.3081)
    assert model.head_fc1 is model.head.fc1 and model.head_fc2.out_features == 10
    assert model.features(x).shape == (8, model.feature_dim) and model.head_fc1.in_features == model.feature_dim
    size_mb = sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 1e6
    assert size_mb < 1.5
    model.eval()
    with torch.inference_mode():
        out = model(x)
        assert out.shape == (8, 10)
        torch.testing.assert_close(model(x), out, rtol=0, atol=0)
        model.head.train()  # MC dropout: features frozen in eval, head sampling
        features = model.features(x)
        assert not torch.equal(model.head(features), model.head(features))
