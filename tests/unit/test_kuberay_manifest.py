"""deploy/kuberay/rayservice.yaml: current, valid for the KubeRay CRD and for Ray Serve, and sized for
the profile it serves. No cluster: the CRD's own schema (from the schemas folder) and Ray's own
pydantic schema do the validating."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

import lensgraph
from lensgraph import serve_env
from lensgraph.cli.main import main
from lensgraph.deploy import crd, kuberay
from tests.unit.test_deploy_files import parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kuberay" / "rayservice.yaml"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def validator(schemas):
    return crd.validator_for(schemas / "kuberay" / "ray.io_rayservices.yaml")


def _serve_config(manifest: dict) -> dict:
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


def _cluster(manifest: dict) -> dict:
    return manifest["spec"]["rayClusterConfig"]


def _groups(manifest: dict) -> dict[str, dict]:
    return {g["groupName"]: g for g in _cluster(manifest)["workerGroupSpecs"]}


# --------------------------------------------------------------------------------------------
# Never stale


def test_committed_manifest_is_current():
    assert MANIFEST.read_text() == kuberay.render(ROOT), "deploy/kuberay/rayservice.yaml is stale: run `make manifests`"


def test_cli_writes_and_checks(tmp_path, capsys):
    out = tmp_path / "rayservice.yaml"
    assert main(["deploy", "kuberay", "--output", str(out), "--check"]) == 1, "a missing file is stale"
    assert main(["deploy", "kuberay", "--output", str(out)]) == 0
    assert out.read_text() == MANIFEST.read_text()
    assert main(["deploy", "kuberay", "--output", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("maxReplicas: 6", "maxReplicas: 7"))
    assert main(["deploy", "kuberay", "--output", str(out), "--check"]) == 1
    assert "make manifests" in capsys.readouterr().err


def test_make_manifests_regenerates_the_committed_file():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^manifests:.*\n\t(.+)$", makefile, re.M)
    assert recipe and "lensgraph deploy kuberay --output deploy/kuberay/rayservice.yaml" in recipe.group(1)


# --------------------------------------------------------------------------------------------
# The KubeRay CRD


def test_manifest_is_valid_for_the_kuberay_crd(manifest, validator):
    assert crd.problems(validator, manifest) == []


def _head(m):
    return _cluster(m)["headGroupSpec"]


def _head_container(m):
    return _head(m)["template"]["spec"]["containers"][0]


BROKEN = {
    "misspelled required field": (
        lambda m: _cluster(m).update(headGroupSpecs=_cluster(m).pop("headGroupSpec")),
        ["spec.rayClusterConfig: 'headGroupSpec' is a required property",
         "spec.rayClusterConfig: Additional properties are not allowed ('headGroupSpecs' was unexpected)"],
    ),
    "misspelled optional field": (
        lambda m: _cluster(m).update(enableInTreeAutoScaling=True),
        ["spec.rayClusterConfig: Additional properties are not allowed ('enableInTreeAutoScaling' was unexpected)"],
    ),
    "wrong type": (
        lambda m: _groups(m)["cpu"].update(minReplicas="1"),
        ["spec.rayClusterConfig.workerGroupSpecs[0].minReplicas: '1' is not of type 'integer'"],
    ),
    "int32 overflow": (
        lambda m: _groups(m)["cpu"].update(maxReplicas=2**31),
        ["spec.rayClusterConfig.workerGroupSpecs[0].maxReplicas: 2147483648 is not a 'int32'"],
    ),
    "bad enum": (
        lambda m: _cluster(m)["autoscalerOptions"].update(upscalingMode="Fast"),
        ["spec.rayClusterConfig.autoscalerOptions.upscalingMode: 'Fast' is not one of"],
    ),
    "int-or-string that is neither": (
        lambda m: _head_container(m)["livenessProbe"]["httpGet"].update(port=52365.5),
        ["spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].livenessProbe.httpGet.port: "
         "52365.5 is not valid under any of the given schemas"],
    ),
    "bad quantity": (
        lambda m: _head_container(m)["resources"]["limits"].update(memory="8 GB"),
        ["spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].resources.limits.memory: "
         "'8 GB' does not match"],
    ),
    "duplicate container port": (
        lambda m: _head_container(m)["ports"].append({"name": "again", "containerPort": 8000}),
        ["spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].ports: duplicate entry with containerPort=8000"],
    ),
    "serveConfigV2 not a string": (
        lambda m: m["spec"].update(serveConfigV2=yaml.safe_load(m["spec"]["serveConfigV2"])),
        ["spec.serveConfigV2: {"],
    ),
    "rayStartParams value not a string": (
        lambda m: _head(m)["rayStartParams"].update({"num-cpus": 0}),
        ["spec.rayClusterConfig.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'"],
    ),
    "wrong kind": (lambda m: m.update(kind="RayCluster"), ["kind: 'RayService' was expected"]),
    "bad name": (lambda m: m["metadata"].update(name="Lens_Graph"), ["metadata.name: 'Lens_Graph' does not match"]),
}


@pytest.mark.parametrize("mistake", BROKEN)
def test_validator_rejects_broken_manifests(manifest, validator, mistake):
    broken = copy.deepcopy(manifest)
    apply, expected = BROKEN[mistake]
    apply(broken)
    found = crd.problems(validator, broken)
    for message in expected:
        assert any(p.startswith(message) for p in found), f"expected {message!r} in {found}"


def test_int_or_string_accepts_both(manifest, validator):
    named = copy.deepcopy(manifest)
    _head_container(named)["readinessProbe"]["httpGet"]["port"] = "dashboard"
    assert crd.problems(validator, named) == []


# --------------------------------------------------------------------------------------------
# serveConfigV2: Ray Serve's own schema, our strict check, and how it combines the two files


def test_serve_config_v2_is_valid_for_ray_serve(manifest):
    from ray.serve.schema import ServeDeploySchema

    from pipelines.config_check import check

    config = _serve_config(manifest)
    ServeDeploySchema.model_validate(config)
    assert check(config) == []


def test_serve_config_v2_is_the_gpu_profile_over_serve_config(manifest):
    config = _serve_config(manifest)
    profile = yaml.safe_load((ROOT / "configs" / "profiles" / "gpu.yaml").read_text())
    base = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    assert config["http_options"]["host"] == "0.0.0.0" and config["http_options"]["port"] == 8000
    assert config["proxy_location"] == "EveryNode"
    app = config["applications"][0]
    assert app["import_path"] == "pipelines.app:build_app"
    assert app["deployments"] == profile["applications"][0]["deployments"]
    assert [d["name"] for d in app["deployments"]] == [d["name"] for d in base["applications"][0]["deployments"]]
    gpus = {d["name"]: d["ray_actor_options"].get("num_gpus", 0) for d in app["deployments"]}
    assert gpus == {"Preprocessor": 0, "FaceDetector": 0.2, "LandmarkModel": 0.1,
                    "Classifier": 0.3, "DigitClassifier": 0.1}
    assert "runtime_env" not in app, "the code and models are in the image"


def test_merge_rules():
    base = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 60},
        "applications": [{"name": "a", "route_prefix": "/", "import_path": "x:y", "args": {"k": 1},
                          "deployments": [{"name": "A", "num_replicas": 1, "user_config": {"t": 1}},
                                          {"name": "OnlyBase", "num_replicas": 1}]}],
    }
    profile = {
        "http_options": {"port": 9000},
        "applications": [{"name": "a", "args": {"k": 2},
                          "deployments": [{"name": "A", "autoscaling_config": {"min_replicas": 1}},
                                          {"name": "OnlyProfile"}]},
                         {"name": "b", "import_path": "p:q"}],
    }
    merged = kuberay.merge_serve_configs(base, profile)
    assert merged["http_options"] == {"port": 9000}, "a top-level key is replaced whole"
    app = merged["applications"][0]
    assert app["args"] == {"k": 2} and app["import_path"] == "x:y", "application keys are replaced one by one"
    assert app["deployments"] == [{"name": "A", "autoscaling_config": {"min_replicas": 1}},
                                  {"name": "OnlyBase", "num_replicas": 1}, {"name": "OnlyProfile"}]
    assert merged["applications"][1]["name"] == "b"
    assert base["http_options"]["host"] == "127.0.0.1", "inputs untouched"
    kube = kuberay.for_kuberay(merged)
    assert kube["proxy_location"] == "EveryNode" and kube["http_options"] == {"port": 8000, "host": "0.0.0.0"}


# --------------------------------------------------------------------------------------------
# The cluster


def test_ray_version_and_images(manifest):
    import ray

    version = _cluster(manifest)["rayVersion"]
    assert version == "2.60.0" and ray.__version__.startswith(version.rsplit(".", 1)[0] + ".")
    images = {name: g["template"]["spec"]["containers"][0]["image"] for name, g in _groups(manifest).items()}
    images["head"] = _head_container(manifest)["image"]
    # the repository part is yours to change (a registry); tag and variant are not
    tag = lensgraph.__version__
    variants = {name: image.rpartition(":")[2] for name, image in images.items()}
    assert variants == {"head": f"{tag}-cpu", "cpu": f"{tag}-cpu", "gpu": f"{tag}-gpu"}
    assert len({image.rpartition(":")[0] for image in images.values()}) == 1, "one image repository"


def test_autoscaling_and_upgrades(manifest):
    cluster = _cluster(manifest)
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["resources"]["limits"]
    assert manifest["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    for group in _groups(manifest).values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_gpu_group(manifest):
    gpu = _groups(manifest)["gpu"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    assert gpu["labels"] == {"lensgraph.io/pool": "gpu"}
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["template"]["spec"]["tolerations"])
    assert _head(manifest)["rayStartParams"]["num-cpus"] == "0", "no replicas on the head"


def test_every_ray_container(manifest):
    dockerfile_env = parse_dockerfile((ROOT / "Dockerfile").read_text())[1][-1].env()
    expected = {**serve_env.load(), "LENSGRAPH_MODEL_REPOSITORY": dockerfile_env["LENSGRAPH_MODEL_REPOSITORY"],
                "LENSGRAPH_API_KEYS_FILE": "/etc/lensgraph/secrets/api_keys"}
    containers = kuberay.ray_containers(manifest)
    assert len(containers) == 3
    for container in containers:
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == expected, container["name"]
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], "requests = limits: Ray sizes itself from them"
        assert {"cpu", "memory"} <= set(resources["limits"])
        ports = {p["containerPort"] for p in container["ports"]}
        assert {8000, 8080} <= ports
        for probe in ("readinessProbe", "livenessProbe"):
            port = container[probe]["httpGet"]["port"]
            assert port in ports or port == 52365, f"{container['name']} {probe} on {port}"
    head, *workers = containers
    assert head["readinessProbe"]["httpGet"] == {"path": "/api/healthz", "port": 52365}
    for worker in workers:
        assert worker["readinessProbe"]["httpGet"] == {"path": "/-/healthz", "port": 8000}
        assert worker["livenessProbe"]["httpGet"] == {"path": "/api/healthz", "port": 52365}


def _quantity_cpus(value) -> float:
    value = str(value)
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_worker_groups_hold_the_profile(manifest):
    """Every replica fits at min and at max size (first-fit decreasing, GPU replicas first), so the
    autoscaler can always place what Serve autoscaling asks for."""
    deployments = _serve_config(manifest)["applications"][0]["deployments"]
    groups = _groups(manifest)

    def replicas(size: str) -> list[tuple[float, float]]:
        out = []
        for d in deployments:
            count = d.get("num_replicas") or d["autoscaling_config"][f"{size}_replicas"]
            options = d["ray_actor_options"]
            out += [(float(options.get("num_cpus", 1)), float(options.get("num_gpus", 0)))] * count
        return sorted(out, key=lambda r: (r[1], r[0]), reverse=True)

    def nodes(size: str) -> list[list[float]]:
        out = []
        for group in groups.values():
            cpus = float(group["rayStartParams"]["num-cpus"])
            assert cpus == _quantity_cpus(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
            gpus = float(group["rayStartParams"].get("num-gpus", 0))
            out += [[cpus, gpus] for _ in range(group[f"{size}Replicas"])]
        return out

    for size in ("min", "max"):
        free = nodes(size)
        for cpus, gpus in replicas(size):
            node = next((n for n in free if n[0] >= cpus - 1e-9 and n[1] >= gpus - 1e-9), None)
            assert node is not None, f"at {size} size a replica ({cpus} CPU, {gpus} GPU) has no room"
            node[0] -= cpus
            node[1] -= gpus


def test_cpu_profile_gives_a_cpu_only_cluster(validator):
    manifest = kuberay.build_manifest(ROOT, profile=Path("configs/profiles/cpu.yaml"))
    assert set(_groups(manifest)) == {"cpu"}
    assert crd.problems(validator, manifest) == []
    from pipelines.config_check import check

    assert check(_serve_config(manifest)) == []


# --------------------------------------------------------------------------------------------
# Security (docs/security.md): Ray token auth and the API key file, both from one Secret


def test_ray_token_auth_and_api_keys_come_from_the_secret(manifest):
    from lensgraph.security import keys

    cluster = _cluster(manifest)
    assert cluster["authOptions"] == {"mode": "token", "secretName": "lensgraph-secrets"}
    # KubeRay sets RAY_AUTH_MODE / RAY_AUTH_TOKEN itself from authOptions: a value here would be a
    # token in the manifest, or would override the Secret's.
    containers = kuberay.ray_containers(manifest)
    pods = kuberay.ray_pod_specs(manifest)
    assert len(pods) == len(containers) == 3
    for pod, container in zip(pods, containers):
        env = {e["name"]: e for e in container["env"]}
        assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(env), container["name"]
        assert all("valueFrom" not in e for e in env.values()), "no secret is copied into env by the manifest"
        path = env[keys.ENV]["value"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "lensgraph-secrets")
        assert mount["readOnly"] is True and path == mount["mountPath"] + "/api_keys"
        volume = next(v for v in pod["volumes"] if v["name"] == "lensgraph-secrets")
        assert volume["secret"]["secretName"] == "lensgraph-secrets"
        assert volume["secret"]["items"] == [{"key": "api_keys", "path": "api_keys"}], "only the key file, not the token"
        assert volume["secret"]["defaultMode"] == 0o440
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"], "the group can read it"
    assert "lgk_" not in MANIFEST.read_text() and "sha256:" not in MANIFEST.read_text(), "no key material"


def test_auth_options_are_checked_by_the_crd(manifest, validator):
    broken = copy.deepcopy(manifest)
    _cluster(broken)["authOptions"]["mode"] = "password"
    assert any(p.startswith("spec.rayClusterConfig.authOptions.mode: 'password' is not one of")
               for p in crd.problems(validator, broken))
    broken = copy.deepcopy(manifest)
    _head(broken)["template"]["spec"]["volumes"][0]["secret"]["defaultMode"] = "0440"
    assert crd.problems(validator, broken), "defaultMode is an integer"
