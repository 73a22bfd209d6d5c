#!/usr/bin/env bash
# Static checks of the deployment files, run by `make test` (and so by CI):
# - every Kubernetes manifest validates against the Kubernetes 1.30 schemas
#   (kubernetes-validate, pinned; the KEDA and Prometheus Operator CRDs have no
#   schema there and are only parsed), and every kustomization lists files that exist;
# - docker-compose.yml validates against the compose specification's schema
#   (check-jsonschema's vendored copy, pinned), and what the schema cannot
#   see: every `$` is an escape or a variable, no service depends on one of a
#   profile it does not share, the `cluster` profile's six nodes, their
#   creator and ACL match the single Redis, and every `sh -c` script and
#   shell healthcheck passes shellcheck; `docker compose config` with and
#   without `--profile cluster` where the compose plugin is installed;
# - promtool checks the Prometheus configuration and alert rules, and runs
#   the rules' unit tests (infrastructure/prometheus/alerts.test.yml);
# - the Grafana dashboards are valid JSON.
# The Python tools live in a virtualenv under target/; promtool comes from
# Debian's `prometheus` package and shellcheck from Debian's `shellcheck`,
# installed when missing and we are root.
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
    if ! command -v shellcheck >/dev/null; then
        is_root || die "shellcheck not found: install Debian's shellcheck package (sudo apt-get install -y shellcheck)"
        apt_install shellcheck
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

    info "docker-compose.yml: interpolation, profiles, the Redis Cluster profile, shell scripts"
    local scripts
    scripts=$(mktemp -d)
    if ! "$VENV/bin/python" - docker-compose.yml "$scripts" <<'PY'; then
import pathlib, re, sys
from ruamel.yaml import YAML
path, scripts = sys.argv[1], pathlib.Path(sys.argv[2])
compose = YAML(typ="safe").load(pathlib.Path(path).read_text())
services = compose["services"]
errors = []

# Compose interpolates every string: past the $$ escapes, a $ must start
# ${NAME}, ${NAME:-default} (and the other operators) or $NAME.
variable = re.compile(r"\$(\{[A-Za-z_][A-Za-z0-9_]*(:?[-?+][^}]*)?\}|[A-Za-z_][A-Za-z0-9_]*)")
def walk(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            walk(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, f"{where}[{i}]")
    elif isinstance(node, str) and "$" in variable.sub("", node.replace("$$", "")):
        errors.append(f"{where}: a $ that is neither $$ nor a variable (write $$ for the shell)")
walk(compose, "")

def profiles(name):
    return set(services[name].get("profiles") or [])

# A service without a profile cannot wait for one that runs only with one.
for name, service in services.items():
    for dependency in service.get("depends_on") or []:
        if dependency not in services:
            errors.append(f"services.{name} depends on {dependency}, which is not defined")
        elif profiles(dependency) and not profiles(dependency) & profiles(name):
            errors.append(f"services.{name} depends on {dependency}, which runs only with --profile {sorted(profiles(dependency))[0]}")

# The cluster profile: six cluster-enabled nodes, each with a volume of its
# own and the single Redis's ACL (plus what a cluster client sends), made one
# cluster by redis-cluster-create, which waits for all of them.
nodes = sorted(
    name for name, service in services.items()
    if "cluster" in profiles(name) and "--cluster-enabled yes" in " ".join(service.get("command") or [])
)
if len(nodes) != 6:
    errors.append(f"profile cluster: {len(nodes)} cluster-enabled Redis nodes, not 6 (3 masters, 3 replicas)")
acl = services["redis"]["environment"]["REDIS_ACL"]
for rule in ("+cluster|info", "+cluster|slots", "+asking", "+wait"):
    if rule not in acl.split():
        errors.append(f"REDIS_ACL lacks {rule}, which the services send to a cluster")
data_volumes = {}
for node in nodes:
    if services[node]["environment"].get("REDIS_ACL") != acl:
        errors.append(f"services.{node}: REDIS_ACL differs from the single redis's")
    mounts = [str(v).split(":")[0] for v in services[node].get("volumes") or [] if str(v).endswith(":/data")]
    if len(mounts) != 1 or mounts[0] not in (compose.get("volumes") or {}):
        errors.append(f"services.{node}: /data must be a named volume declared under volumes:")
    elif mounts[0] in data_volumes:
        errors.append(f"services.{node} shares its /data volume with {data_volumes[mounts[0]]}")
    else:
        data_volumes[mounts[0]] = node
creator = services.get("redis-cluster-create")
if creator is None:
    errors.append("profile cluster: no redis-cluster-create service")
else:
    seeds = sorted(seed.rsplit(":", 1)[0] for seed in creator["environment"]["REDIS_CLUSTER_SEEDS"].split())
    if seeds != nodes:
        errors.append(f"redis-cluster-create: REDIS_CLUSTER_SEEDS names {seeds}, the nodes are {nodes}")
    if sorted(creator.get("depends_on") or []) != nodes:
        errors.append("redis-cluster-create must wait for every node (depends_on)")
for name in ("ingest-gateway", "worker", "query-api"):
    if "REDIS_CLUSTER_NODES" not in services[name].get("environment", {}):
        errors.append(f"services.{name}: no REDIS_CLUSTER_NODES, so it cannot use the cluster")

# The shell scripts, as the shell sees them, for shellcheck.
for name, service in services.items():
    command = service.get("command")
    if isinstance(command, list) and command[:2] == ["sh", "-c"]:
        (scripts / f"{name}.sh").write_text(command[2].replace("$$", "$"))
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, list) and test[:1] == ["CMD-SHELL"]:
        (scripts / f"{name}.healthcheck.sh").write_text(test[1].replace("$$", "$") + "\n")

if errors:
    sys.exit("\n".join(f"{path}: {e}" for e in errors))
print(f"  interpolation and profiles consistent; cluster profile: {len(nodes)} nodes, ACL as the single Redis's")
PY
        rm -rf "$scripts"
        die "docker-compose.yml: see above"
    fi
    if ! shellcheck -s sh "$scripts"/*.sh; then
        rm -rf "$scripts"
        die "docker-compose.yml: a shell script fails shellcheck (the script above, named after its service)"
    fi
    printf '  shellcheck: %s scripts and shell healthchecks clean\n' "$(find "$scripts" -name '*.sh' | wc -l)"
    rm -rf "$scripts"

    if docker compose version >/dev/null 2>&1; then
        info "docker compose config, without and with --profile cluster"
        docker compose config --quiet
        EVENTLINE_REDIS_CLUSTER_NODES=redis://eventline:x@redis-node-1:6379 docker compose --profile cluster config --quiet
    else
        info "no docker compose plugin here: 'docker compose config' skipped"
    fi
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
