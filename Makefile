# lensgraph: two commands for a fresh machine, `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Assets (weights, sample images) live outside the repository; point at ../shared/assets when it exists.
ifeq ($(origin LENSGRAPH_ASSETS), undefined)
  ifneq ($(wildcard ../shared/assets),)
    LENSGRAPH_ASSETS := $(abspath ../shared/assets)
  endif
endif
export LENSGRAPH_ASSETS
LENSGRAPH_MODEL_REPOSITORY ?= $(abspath model_repository)
export LENSGRAPH_MODEL_REPOSITORY

# Ray Serve's process environment (throughput settings, gRPC message limit): one file for all.
include configs/serve.env
SERVE_ENV_NAMES := $(shell sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' configs/serve.env)
# A value with a space is double-quoted in the file (for a shell that sources it): make keeps quotes, so drop them.
$(foreach name,$(SERVE_ENV_NAMES),$(eval $(name) := $(subst ",,$(value $(name)))))
export $(SERVE_ENV_NAMES)

# API keys (docs/security.md): off unless LENSGRAPH_API_KEYS_FILE names a key file. A relative path is
# made absolute here, so it names the same file in every process Ray starts.
ifneq ($(strip $(LENSGRAPH_API_KEYS_FILE)),)
  override LENSGRAPH_API_KEYS_FILE := $(abspath $(LENSGRAPH_API_KEYS_FILE))
  export LENSGRAPH_API_KEYS_FILE
endif

PYTEST_ARGS ?=

.PHONY: setup system-deps tf-env models run test fuzz audit loadtest manifests clean help

help:
	@echo "make run    - install, build the model repository, start the service on :8000"
	@echo "make test   - install, build the model repository, run the test suite"
	@echo "make models - (re)build the model repository from configs/models.yaml"
	@echo "make fuzz   - fuzz every route from the OpenAPI schema (FUZZ_EXAMPLES=500; FUZZ_URL=a running server): docs/reliability.md"
	@echo "make audit  - known vulnerabilities of the installed dependencies (pip-audit; never fails: docs/security.md)"
	@echo "make manifests - regenerate deploy/kuberay/rayservice.yaml from the Serve configs (docs/deploy.md)"
	@echo "make setup  - create $(VENV) and install lensgraph with its build and dev extras"
	@echo "make tf-env - create $(TF_VENV) with TensorFlow and tf2onnx, for 'lensgraph export --saved-model' (docs/models.md)"
	@echo "make benchmark, cpu-accounting, cost-growth, benchmark-served, optimization, multinode, autoscaling, overload, faults, soak - measurements (docs/performance.md)"
	@echo "make loadtest - locust against a running server (HOST, USERS, DURATION, USER_CLASS, SHAPE): docs/loadtests.md"

setup: $(VENV)/.stamp-setup

# Debian packages the tests and the digits evaluation read: TrueType fonts to render held-out letters
# (lensgraph/evaluation/ood.py; never used in training), darknet for its network cfg files, voc.names
# and sample photos (lensgraph/architectures/darknet_files.py; it ships no weights), and chromium with its
# chromedriver, the real browser the web page is tested in (tests/integration/browser.py). Installed when
# missing and when root (as in CI); otherwise a line says what to install, the evaluation uses the fonts
# there are, and the darknet and browser tests skip (fail under CI=true).
SYSTEM_PACKAGES := fonts-liberation fonts-freefont-ttf darknet chromium chromium-driver
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || printf '%s ' $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make: missing Debian packages: $$missing (as root: apt-get install $$missing)"; fi

# Re-runs only when pyproject.toml changes; the stamp makes a no-op setup take milliseconds.
$(VENV)/.stamp-setup: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[build,dev]'
	@touch $@

models: setup
	$(BIN)/lensgraph models build

# TensorFlow, for importing SavedModels (`lensgraph export --saved-model`, docs/models.md): its own venv, so
# TensorFlow never enters $(VENV) nor the runtime image. lensgraph finds it as $(TF_VENV)/bin/python (or
# $$LENSGRAPH_TF_PYTHON). Re-runs only when requirements-tf.txt changes; a no-op run takes milliseconds.
TF_VENV ?= .venv-tf
tf-env: $(TF_VENV)/.stamp-tf

$(TF_VENV)/.stamp-tf: requirements-tf.txt
	@test -x $(TF_VENV)/bin/python || $(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TF_VENV)/bin/python -m pip install --quiet -r requirements-tf.txt
	TF_CPP_MIN_LOG_LEVEL=3 $(TF_VENV)/bin/python -c "import tensorflow as tf, tf2onnx, onnxruntime; \
	    print('$(TF_VENV): tensorflow', tf.__version__, 'tf2onnx', tf2onnx.__version__, 'onnxruntime', onnxruntime.__version__)"
	@touch $@

# `serve run serve_config.yaml` under a supervisor: SIGTERM or Ctrl-C drains requests and stops every
# process it started (lensgraph/serve_supervisor.py; docs/reliability.md, "Stopping").
run: setup system-deps models
	$(BIN)/lensgraph run serve_config.yaml

test: setup system-deps models tf-env
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The API fuzzed from its own OpenAPI schema (schemathesis), longer than `make test` does: FUZZ_EXAMPLES
# schema-valid cases per route, against FUZZ_URL when set (e.g. http://127.0.0.1:8000 of `make run`), else
# against an app it starts on a private cluster. Fails on any 5xx, non-JSON error or missing X-Request-ID.
FUZZ_EXAMPLES ?= 500
FUZZ_URL ?=
fuzz: setup models
	LENSGRAPH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LENSGRAPH_FUZZ_URL='$(FUZZ_URL)' \
	    $(BIN)/python -m pytest tests/integration/test_bad_input.py -k fuzz -s $(PYTEST_ARGS)

# pip-audit of what `make setup` installed, against PyPI's vulnerability data (OSV when PyPI gives none).
# Prints findings, or "not checked: <reason>" when the data cannot be reached; exits 0 either way
# unless AUDIT_STRICT=1 (docs/security.md, "Dependency audit").
audit: setup
	$(BIN)/python -m lensgraph.security.audit $(if $(filter 1,$(AUDIT_STRICT)),--strict)

# Load tests against a server that is already running (`make run` in another shell): docs/loadtests.md.
# Reports (locust's CSV and HTML, and a Markdown summary) go to $(REPORTS)/, which git ignores.
HOST ?= http://127.0.0.1:8000
USERS ?= 8
SPAWN_RATE ?= 2
DURATION ?= 60s
USER_CLASS ?= MixedUser
SHAPE ?= none
REPORTS ?= reports
LOCUST_ARGS ?=

LOCUST_COMMAND = $(BIN)/locust -f loadtests/locustfile.py --headless --host '$(HOST)' -u $(USERS) -r $(SPAWN_RATE) \
    -t $(DURATION) --csv $(REPORTS)/loadtest --html $(REPORTS)/loadtest.html --only-summary $(LOCUST_ARGS) $(USER_CLASS)

loadtest: setup
	@$(BIN)/python loadtests/preflight.py '$(HOST)'
	@mkdir -p $(REPORTS)
	@echo "LOADTEST_SHAPE=$(SHAPE) $(LOCUST_COMMAND)"
	@# The summary is written even when requests failed; the exit status is locust's (1 on any failure).
	@LOADTEST_SHAPE=$(SHAPE) $(LOCUST_COMMAND); status=$$?; \
	$(BIN)/python loadtests/summarize.py --prefix $(REPORTS)/loadtest \
	    --title "make loadtest HOST=$(HOST) USER_CLASS=$(USER_CLASS) USERS=$(USERS) SPAWN_RATE=$(SPAWN_RATE) DURATION=$(DURATION) SHAPE=$(SHAPE)" \
	    || status=1; \
	exit $$status

# The KubeRay manifest: serveConfigV2 from serve_config.yaml + the GPU profile, env from configs/serve.env.
manifests: setup
	$(BIN)/lensgraph deploy kuberay --output deploy/kuberay/rayservice.yaml

clean:
	rm -rf model_repository reports .pytest_cache

# The benchmark's peer systems (BentoML, NVIDIA Triton via PyTriton), each from its own venv under
# .bench/venvs (created on first use, a few minutes): start each, classify two sample photos, stop it.
.PHONY: peers-check
peers-check: setup models
	LENSGRAPH_PEERS=1 $(BIN)/python -m pytest -m peers tests/peers $(PYTEST_ARGS)

# Measurements (issue 5, 6): each writes its results under docs/benchmarks/. They need the whole
# machine: run one at a time, with nothing else busy. docs/performance.md says what each shows.
.PHONY: benchmark benchmark-served cpu-accounting cost-growth optimization multinode autoscaling faults overload soak
benchmark: setup models
	$(BIN)/python -m benchmarks.compare

benchmark-served: setup models
	$(BIN)/python -m benchmarks.served_study

# Labelled runs live side by side in docs/benchmarks/cpu_accounting.{json,md}: measure before and after a change.
LABEL ?= current
cpu-accounting: setup models
	$(BIN)/python -m benchmarks.cpu_accounting --label '$(LABEL)'

cost-growth: setup models
	$(BIN)/python -m benchmarks.cost_growth

optimization: setup models
	$(BIN)/python -m benchmarks.optimization

multinode: setup models
	$(BIN)/python -m benchmarks.multinode

autoscaling: setup models
	$(BIN)/python -m benchmarks.autoscaling

# Reliability (docs/reliability.md): open-loop overload; each kind of replica killed under load and a
# config change deployed under load.
overload: setup models
	$(BIN)/python -m benchmarks.overload

faults: setup models
	$(BIN)/python -m benchmarks.faults

# The mixed locust load for SOAK_MINUTES, RSS of every process every 10 s: docs/benchmarks/soak.md.
SOAK_MINUTES ?= 10
soak: setup models
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES)
