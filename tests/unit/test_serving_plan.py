"""Which served model answers a route (lensgraph/serving_plan.py): names, defaults, errors."""

from __future__ import annotations

import pytest

from lensgraph.errors import ModelUnavailable, UnknownModel
from lensgraph.serving_plan import ServedModel, choose, served_models

BUILTIN = {"classifier": False, "face_detector": False, "landmarks": False, "digits": False}


def test_the_builtins_are_served_under_their_deployment_names_and_entries_merge_over_them():
    served = served_models({})
    assert {n: s.deployment for n, s in served.items()} == {
        "classifier": "Classifier", "face_detector": "FaceDetector", "landmarks": "LandmarkModel",
        "digits": "DigitClassifier"}
    merged = served_models({"digits": "mnist_model", "resnet50": ServedModel(), "landmarks": None})
    assert merged["digits"].model == "mnist_model" and merged["digits"].deployment == "DigitClassifier"
    assert merged["resnet50"].model == "resnet50" and merged["resnet50"].deployment == "resnet50"
    assert "landmarks" not in merged


def test_two_models_cannot_share_a_deployment_and_names_are_checked():
    with pytest.raises(ValueError, match="share the deployment name 'Classifier'"):
        served_models({"resnet": ServedModel(deployment="Classifier")})
    with pytest.raises(ValueError, match="share the deployment name 'Preprocessor'"):
        served_models({"x": ServedModel(deployment="Preprocessor")})
    with pytest.raises(ValueError, match="served model name"):
        served_models({"bad name": ServedModel()})


def test_a_route_takes_the_named_model_the_marked_default_the_conventional_name_or_the_only_one():
    tasks = {"classifier": "classification", "resnet": "classification", "unet": "landmark_heatmaps"}
    served = {**BUILTIN, "resnet": False, "unet": False}
    assert choose("classify", None, served, tasks) == "classifier"
    assert choose("classify", "resnet", served, tasks) == "resnet"
    assert choose("classify", None, {**served, "resnet": True}, tasks) == "resnet"
    assert choose("landmarks", None, {"unet": False}, tasks) == "unet"  # the only landmark model


def test_an_unknown_name_or_a_model_of_another_task_is_a_404_and_no_model_a_503():
    tasks = {"classifier": "classification", "unet": "landmark_heatmaps"}
    with pytest.raises(UnknownModel, match="no served model 'resnet99'; classify serves \\['classifier'\\]"):
        choose("classify", "resnet99", {**BUILTIN, "unet": False}, tasks)
    with pytest.raises(UnknownModel, match="serves task 'landmark_heatmaps', not classification"):
        choose("classify", "unet", {**BUILTIN, "unet": False}, tasks)
    assert UnknownModel("x").status == 404
    with pytest.raises(ModelUnavailable, match="weights/detector"):
        choose("detect", None, BUILTIN, tasks)


def test_a_cards_serving_hints_set_the_deployments_batching_and_resources(repository, tmp_path):
    """``serving`` in a card: batching the deployment starts with (user_config overrides it) and its replica's
    resources (serve_config's ray_actor_options override them); without hints a quarter CPU."""
    import shutil

    import yaml

    from deployments.model import Model
    from pipelines.app import actor_options

    assert actor_options(str(repository), "landmarks") == {"num_cpus": 0.25}
    assert actor_options(str(repository), "not_built") == {"num_cpus": 0.25}
    shutil.copytree(repository / "landmarks", tmp_path / "landmarks")
    card_file = tmp_path / "landmarks" / "1" / "model.yaml"
    card = yaml.safe_load(card_file.read_text())
    card["serving"] = {"max_batch_size": 4, "num_cpus": 0.5, "num_gpus": 0.1}
    card_file.write_text(yaml.safe_dump(card))
    assert actor_options(str(tmp_path), "landmarks") == {"num_cpus": 0.5, "num_gpus": 0.1}
    replica = Model.func_or_class("landmarks", str(tmp_path))
    assert replica.settings.max_batch_size == 4
    replica.reconfigure({"max_batch_size": 8})
    assert replica.settings.max_batch_size == 8
    replica.reconfigure({})
    assert replica.settings.max_batch_size == 4
