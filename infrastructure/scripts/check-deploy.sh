#!/usr/bin/env bash
# Static checks of the deployment files, run by `make test` (and so by CI):
# - every Kubernetes manifest validates against the Kubernetes 1.30 schemas
#   (kubernetes-validate, pinned; the KEDA and Prometheus Operator CRDs have no
#   schema there and are only parsed), and every kustomization lists files that exist;
# - docker-compose.yml validates against the compose specification's schema
#   (check-jsonschema's vendored copy, pinned);
# - promtool checks the Prometheus configuration and alert rules, and runs
#   the rules' unit tests (infrastructure/prometheus/alerts.test.yml);
# - the Grafana dashboards are valid JSON.
# The Python tools live in a virtualenv under target/; promtool comes from
# Debian's `prometheus` package, installed when missing and we are root.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$EVENTLINE_ROOT"

KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
CHECK_JSONSCHEMA=check-jsonschema==0.39.0
KUBERNETES_VERSION=1.30.0

target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$EVENTLINE_ROOT/$target
VENV=$target/deploy-check-venv

ensure_tools() {
    if ! "$VENV/bin/python" -c 'import kubernetes_validate, check_jsonschema' 2>/dev/null; then
        info "installing $KUBERNETES_VALIDATE $CHECK_JSONSCHEMA into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "$KUBERNETES_VALIDATE" "$CHECK_JSONSCHEMA"
    fi
    if ! command -v promtool >/dev/null; then
        is_root || die "promtool not found: install Debian's prometheus package (sudo apt-get install -y prometheus)"
        apt_install prometheus
        # The package may start a Prometheus service; these checks need only promtool.
        if command -v systemctl >/dev/null; then systemctl stop prometheus 2>/dev/null || true; fi
    fi
}

check_kubernetes() {
    info "Kubernetes manifests (kubernetes-validate --strict, $KUBERNETES_VERSION)"
    local manifests=()
    while IFS= read -r f; do manifests+=("$f"); done < <(find k8s -name '*.yaml' ! -name kustomization.yaml | sort)
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "${manifests[@]}"
    "$VENV/bin/python" - "${manifests[@]}" <<'PY'
import sys, pathlib
from ruamel.yaml import YAML
yaml = YAML(typ="safe")
for path in sys.argv[1:]:
    for doc in yaml.load_all(pathlib.Path(path).read_text()):
        if doc is None:
            continue
        for key in ("apiVersion", "kind", "metadata"):
            if key not in doc:
                sys.exit(f"{path}: a document without {key}")
for kustomization in pathlib.Path("k8s").rglob("kustomization.yaml"):
    spec = yaml.load(kustomization.read_text())
    for resource in spec.get("resources", []):
        if not (kustomization.parent / resource).exists():
            sys.exit(f"{kustomization}: lists {resource}, which does not exist")
print("  manifests parse; kustomizations list existing files")
PY
}

check_otel_collector() {
    info "infrastructure/otel/collector.yaml: every pipeline part defined, the exporter aimed at the gateway"
    "$VENV/bin/python" - infrastructure/otel/collector.yaml <<'PY'
import sys, pathlib
from ruamel.yaml import YAML
path = sys.argv[1]
config = YAML(typ="safe").load(pathlib.Path(path).read_text())
for name, pipeline in config["service"]["pipelines"].items():
    for kind in ("receivers", "processors", "exporters"):
        for part in pipeline.get(kind, []):
            if part not in (config.get(kind) or {}):
                sys.exit(f"{path}: pipeline {name} uses {kind[:-1]} {part}, which is not defined")
exporter = config["exporters"]["otlphttp/eventline"]
if exporter["endpoint"].rstrip("/").endswith("/v1/logs"):
    sys.exit(f"{path}: otlphttp appends /v1/logs itself; give the gateway's base URL")
batch = config["processors"]["batch"]
if batch.get("send_batch_max_size", 0) in (0, None) or batch["send_batch_max_size"] > 1000:
    sys.exit(f"{path}: cap batch.send_batch_max_size so a request stays under MAX_BODY_BYTES")
print("  collector config parses; pipelines use defined parts")
PY
}

check_compose() {
    info "docker-compose.yml against the compose specification"
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
}

check_prometheus() {
    info "Prometheus configuration and alert rules (promtool)"
    local dir
    dir=$(mktemp -d)
    cp infrastructure/prometheus/prometheus.yml infrastructure/prometheus/alerts.yml "$dir/"
    cp -r infrastructure/prometheus/targets/local "$dir/targets"
    if ! promtool check config "$dir/prometheus.yml"; then
        rm -rf "$dir"
        die "promtool rejects infrastructure/prometheus/prometheus.yml"
    fi
    rm -rf "$dir"
    promtool check rules infrastructure/prometheus/alerts.yml
    # The alerts' behaviour on given series (a fresh install, a job that
    # stopped succeeding, dead letters).
    promtool test rules infrastructure/prometheus/alerts.test.yml
}

check_dashboards() {
    info "Grafana dashboards are valid JSON"
    local f
    for f in infrastructure/grafana/dashboards/*.json; do
        python3 -m json.tool "$f" >/dev/null || die "$f is not valid JSON"
    done
}

ensure_tools
check_kubernetes
check_compose
check_otel_collector
check_prometheus
check_dashboards
info "deployment files are valid"
