"""Our Serve configs are checked strictly: the shipped ones pass, each kind of mistake is named."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.config_check import check, check_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "serve_config.yaml", *sorted((ROOT / "configs" / "profiles").glob("*.yaml"))]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_pass(path):
    assert check_file(path) == []


def _base() -> dict:
    return yaml.safe_load((ROOT / "serve_config.yaml").read_text())


def _deployment(config: dict, name: str) -> dict:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == name)


MUTATIONS = {
    "top-level key": (lambda c: c.update(http_option={}), "http_option: unknown key (did you mean 'http_options'?)"),
    "http option": (lambda c: c["http_options"].update(prot=1), "http_options.prot: unknown key"),
    "deployment key": (lambda c: _deployment(c, "Classifier").update(max_ongoing_request=4),
                       "max_ongoing_request: unknown key (did you mean 'max_ongoing_requests'?)"),
    "actor option": (lambda c: _deployment(c, "Classifier")["ray_actor_options"].update(num_cpu=1),
                     "ray_actor_options.num_cpu: unknown key (did you mean 'num_cpus'?)"),
    "autoscaling": (lambda c: _deployment(c, "Classifier").update(autoscaling_config={"max_replica": 2}),
                    "autoscaling_config.max_replica: unknown key"),
    "user_config key": (lambda c: _deployment(c, "Classifier")["user_config"].update(max_batchsize=8),
                        "user_config.max_batchsize: Extra inputs are not permitted"),
    "user_config value": (lambda c: _deployment(c, "FaceDetector")["user_config"].update(score_threshold=3),
                          "user_config.score_threshold"),
    "app args": (lambda c: c["applications"][0]["args"].update(max_upload=5), "args.max_upload"),
    "deployment name": (lambda c: _deployment(c, "Classifier").update(name="Clasifier"), "no deployment 'Clasifier'"),
    "batching": (lambda c: _deployment(c, "Classifier").update(max_ongoing_requests=2),
                 "max_ongoing_requests=2 is below max_batch_size=16"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_each_mistake_is_reported_by_name(mutation):
    config = copy.deepcopy(_base())
    apply, expected = MUTATIONS[mutation]
    apply(config)
    problems = check(config)
    assert any(expected in p for p in problems), problems


def test_cli_exit_code(tmp_path):
    bad = _base()
    _deployment(bad, "Preprocessor")["ray_actor_options"]["num_gpu"] = 1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    run = [sys.executable, "-m", "lensgraph", "config", "check"]
    good = subprocess.run(run + [str(ROOT / "serve_config.yaml")], capture_output=True, text=True)
    assert good.returncode == 0 and "ok" in good.stdout
    failed = subprocess.run(run + [str(tmp_path / "bad.yaml")], capture_output=True, text=True)
    assert failed.returncode == 1 and "num_gpu" in failed.stdout
