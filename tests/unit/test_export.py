"""ONNX export: real EfficientNet-Lite0 weights, torchvision-layout ResNets, a user's own model file.

Every exported model must agree with torch to 1e-4 (fp32) on random inputs; the builder refuses
to write an artefact that does not, so these tests check both the figure and the refusal.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lensgraph.architectures import build_architecture
from lensgraph.imaging.decode import decode_image
from lensgraph.imaging.transforms import classifier_standard
from lensgraph.repository import store
from lensgraph.repository.build import build_one
from lensgraph.repository.spec import ModelSpec, load_models_config
from lensgraph.runtime.session import create_session

ROOT = Path(__file__).resolve().parents[2]


def _spec(name: str, **fields) -> ModelSpec:
    return ModelSpec.model_validate(fields).model_copy(update={"name": name})


@pytest.fixture(scope="module")
def classifier_entry(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    spec = load_models_config(ROOT / "configs" / "models.yaml")["classifier"]
    result = build_one(spec, root, ROOT / "configs", command="test")
    assert result.status == "built", result.message
    return store.find_model(root, "classifier")


def _classify(entry, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = create_session(entry.onnx_path)
    return session.run(None, {"image": image[None]})


@pytest.mark.parametrize("photo, expected", [("n01440764_tench.JPEG", 0), ("n01667114_mud_turtle.JPEG", 35)])
def test_efficientnet_lite0_onnx_classifies_the_sample_photos(assets, classifier_entry, photo, expected):
    rgb = decode_image((assets / "imagenet" / photo).read_bytes()).pixels
    probs, embedding = _classify(classifier_entry, classifier_standard(rgb, 256, 224))
    assert int(np.argmax(probs[0])) == expected
    assert probs[0, expected] > 0.7
    assert embedding.shape == (1, 1280)
    labels = classifier_entry.labels_path.read_text().splitlines()
    assert labels[expected] == ("tench" if expected == 0 else "mud turtle")


def test_efficientnet_lite0_card_and_parity_against_torch(assets, classifier_entry):
    card = classifier_entry.card
    assert card["weights"]["real"] is True and card["weights"]["sha256"].startswith("579344248a93")
    assert card["inputs"] == [{"name": "image", "dtype": "uint8", "shape": ["batch", 224, 224, 3]}]
    assert [o["name"] for o in card["outputs"]] == ["probabilities", "embedding"]
    assert card["parity"]["max_abs_diff"] <= 1e-4
    assert card["preprocessing"]["in_graph"] == {"mean": [127.0] * 3, "std": [128.0] * 3}
    assert card["preprocessing"]["before_graph"]["crop"] == 224
    # Independent check on a real photo: ONNX Runtime vs the torch module loaded from the .pth.
    from lensgraph.architectures.state_dict import load_state_dict_strict, load_weights_file

    model = build_architecture("efficientnet_lite0").eval()
    load_state_dict_strict(model, load_weights_file(assets / "imagenet" / "efficientnet-lite0-57934424.pth"))
    rgb = decode_image((assets / "imagenet" / "n01667114_mud_turtle.JPEG").read_bytes()).pixels
    crop = classifier_standard(rgb, 256, 224)
    x = (torch.from_numpy(crop).permute(2, 0, 1)[None].float() - 127.0) / 128.0
    with torch.inference_mode():
        expected = torch.softmax(model(x), dim=-1).numpy()
    probs, _ = _classify(classifier_entry, crop)
    assert np.max(np.abs(probs - expected)) <= 1e-4


def test_resnet18_from_a_torchvision_layout_state_dict_exports_with_parity(tmp_path):
    torch.manual_seed(1234)
    state = build_architecture("resnet18").state_dict()  # torchvision's key layout, seeded random values
    weights = tmp_path / "resnet18_random.pth"
    torch.save(state, weights)
    spec = _spec("resnet18", task="classification", architecture="resnet18", weights=f"path:{weights}")
    result = build_one(spec, tmp_path / "repo", tmp_path)
    assert result.status == "built", result.message
    card = store.find_model(tmp_path / "repo", "resnet18").card
    assert card["parity"]["max_abs_diff"] <= 1e-4
    assert [o["shape"] for o in card["outputs"]] == [["batch", 1000], ["batch", 512]]
    assert card["preprocessing"]["in_graph"]["mean"] == pytest.approx([123.675, 116.28, 103.53])


def test_random_weights_are_marked_not_real(tmp_path):
    spec = _spec("r50", task="classification", architecture="resnet50", weights="random:3")
    result = build_one(spec, tmp_path, tmp_path)
    assert result.status == "built", result.message
    entry = store.find_model(tmp_path, "r50")
    assert entry.card["weights"] == {
        "source": "random:3", "sha256": "random:3", "real": False,
        "note": "seeded random weights: predictions are meaningless",
    }
    assert entry.card["outputs"][1]["shape"] == ["batch", 2048]


def test_a_wrong_state_dict_fails_with_the_key_names(tmp_path):
    state = build_architecture("resnet18").state_dict()
    state.pop("layer4.1.bn2.running_var")
    state["extra.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(10, 512)
    torch.save(state, tmp_path / "bad.pth")
    spec = _spec("bad", task="classification", architecture="resnet18", weights="path:bad.pth")
    result = build_one(spec, tmp_path / "repo", tmp_path)
    assert result.status == "failed"
    for key in ("layer4.1.bn2.running_var", "extra.weight", "fc.weight"):
        assert key in result.message
    assert not (tmp_path / "repo" / "bad").exists()


def test_baked_resize_classifier_takes_any_image_size(tmp_path):
    spec = _spec("r18", task="classification", architecture="resnet18", weights="random:0", bake_resize=True)
    result = build_one(spec, tmp_path, tmp_path)
    assert result.status == "built", result.message
    entry = store.find_model(tmp_path, "r18")
    assert entry.input_spec()["shape"] == ["batch", "height", "width", 3]
    session = create_session(entry.onnx_path)
    for h, w in ((375, 500), (96, 160)):
        probs, _ = session.run(None, {"image": np.zeros((1, h, w, 3), np.uint8)})
        assert probs.shape == (1, 1000) and abs(float(probs.sum()) - 1.0) < 1e-4


USER_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn


    class UNet(nn.Module):
        \"\"\"A user's tiny heatmap UNet, written the way someone trains one outside lensgraph.\"\"\"

        def __init__(self, landmarks: int = 15, width: int = 8):
            super().__init__()
            self.down = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.mid = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.out = nn.Conv2d(width + 1, landmarks, 1)

        def forward(self, x):
            y = self.up(self.mid(self.down(x)))
            return self.out(torch.cat([y, x], dim=1))
    """
)


def test_export_cli_on_a_users_own_model_file(tmp_path):
    (tmp_path / "model.py").write_text(USER_MODEL)
    sys.path.insert(0, str(tmp_path))
    try:
        import model as user_model  # the test trains nothing: seeded weights saved as the user would
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    torch.save(user_model.UNet().state_dict(), tmp_path / "simple_unet.pth")
    out = tmp_path / "unet"
    cmd = [sys.executable, "-m", "lensgraph", "export", "--model-file", str(tmp_path / "model.py"), "--class", "UNet",
           "--weights", str(tmp_path / "simple_unet.pth"), "--input-shape", "1,96,96", "--task", "landmark_heatmaps",
           "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["inputs"][0] == {"name": "image", "dtype": "uint8", "shape": ["batch", 96, 96, 1]}
    assert card["outputs"][0] == {"name": "heatmaps", "dtype": "float32", "shape": ["batch", 15, 96, 96]}
    assert card["parity"]["max_abs_diff"] <= 1e-4
    assert card["build"]["command"].startswith("lensgraph export --model-file")
    heatmaps = create_session(out / "model.onnx").run(None, {"image": np.full((2, 96, 96, 1), 128, np.uint8)})[0]
    assert heatmaps.shape == (2, 15, 96, 96)

    wrong = subprocess.run(cmd[:-2] + ["--class", "Missing", "--output", str(tmp_path / "x")],
                           capture_output=True, text=True, cwd=tmp_path)
    assert wrong.returncode == 2 and "no class 'Missing'" in wrong.stderr and "UNet" in wrong.stderr


def test_export_cli_imports_an_existing_onnx_file(assets, tmp_path):
    out = tmp_path / "det"
    done = subprocess.run(
        [sys.executable, "-m", "lensgraph", "export", "--onnx", str(assets / "face_detector" / "version-RFB-320.onnx"),
         "--task", "face_detection", "--mean", "127,127,127", "--std", "128,128,128", "--output", str(out)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["inputs"][0]["shape"] == ["batch", 240, 320, 3]
    assert card["export"]["opset"] == 9
