#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests (deploy/k8s) and the Helm chart
# (deploy/helm/weir); no cluster, no helm binary. Installs its tools (pinned in
# requirements-validate.txt) into deploy/k8s/.venv on first use.
#
#   deploy/k8s/validate.sh
#
# Checks, each fatal:
#   1. every manifest in deploy/k8s: YAML without duplicate keys, and
#      `kubernetes-validate --strict` against Kubernetes 1.28 (the minimum: the
#      pod-index label) and the newest schema bundled (1.37);
#   2. `helm lint --strict` of the chart, with its default values and with
#      ci/observers-values.yaml;
#   3. `helm template` with the default values (release weir, namespace weir) and with
#      ci/observers-values.yaml (release events, namespace streaming: 5 brokers, 3
#      voters), each output checked as in 1., its voter list checked against its
#      replicas;
#   4. the default rendering and the plain manifests describe the same objects;
#   5. the chart refuses voters > replicas;
#   6. the plain manifests and both renderings serve Kafka clients (a kafka port on the
#      pods and both Services, WEIR_KAFKA_LISTEN, WEIR_KAFKA_ADVERTISE per pod) and AMQP
#      clients (an amqp port on the pods and both Services, WEIR_AMQP_LISTEN, or
#      WEIR_AMQPS_LISTEN alone with TLS), and create no topic on first use
#      (WEIR_AUTO_CREATE_TOPICS=false);
#   7. the `security:` values: ci/secure-values.yaml linted, rendered and validated as in
#      2. and 3., and secured as asked (validate_tools.py security); TLS without a
#      Secret, and authentication required without TLS, refused.
# Environment: WEIR_K8S_VENV (default deploy/k8s/.venv), WEIR_K8S_STEP_TIMEOUT (seconds
# per step, default 300).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chart="$(cd "$here/../helm/weir" && pwd)"
venv="${WEIR_K8S_VENV:-$here/.venv}"
step_timeout="${WEIR_K8S_STEP_TIMEOUT:-300}"
requirements="$here/requirements-validate.txt"
# Kubernetes versions to validate against: the minimum supported and the newest bundled.
k8s_versions=(1.28.0 1.37.0)

say() { printf '== %s\n' "$*"; }
fail() { printf 'validate.sh: FAIL: %s\n' "$*" >&2; exit 1; }
run() { timeout --kill-after=10 "$step_timeout" "$@"; }

command -v python3 >/dev/null || fail "python3 is needed"
command -v timeout >/dev/null || fail "timeout (coreutils) is needed"

# --- tools -------------------------------------------------------------------------------
stamp="$venv/.requirements-validate.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  say "installing tools into $venv"
  rm -rf "$venv"
  run python3 -m venv "$venv" ||
    fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$requirements" || fail "pip install -r $requirements failed"
  cp "$requirements" "$stamp"
fi
py="$venv/bin/python"
kv="$venv/bin/kubernetes-validate"
tools="$here/validate_tools.py"
kv_version="$("$kv" --version)"
helm_version="$("$py" -c 'import helm_python as h; print(f"Helm SDK {h.helm_sdk_version()} (helm-python-sdk {h.__version__}, libhelm_c {h.helm_c_version()})")')"
say "tools: kubernetes-validate $kv_version; $helm_version"

# Every version asked for must have bundled schemas (else kubernetes-validate says FATAL).
bundled="$("$py" -c 'import kubernetes_validate.utils as u; print(" ".join(u.all_versions()))')"
for v in "${k8s_versions[@]}"; do
  case " $bundled " in *" $v "*) ;; *) fail "kubernetes-validate bundles no schema for $v (has: $bundled)";; esac
done

out="$venv/rendered"
rm -rf "$out"
mkdir -p "$out"

checked=0

# kubernetes-validate --strict on FILE against every version. It only warns (exit 0)
# about a kind it has no schema for, so anything but an INFO "passed" line fails here.
validate_manifests() {
  local file="$1" log="$out/kubernetes-validate.log" args=() v docs passes
  for v in "${k8s_versions[@]}"; do args+=(-k "$v"); done
  run "$py" "$tools" no-duplicate-keys "$file" || fail "$file: YAML"
  if ! run "$kv" --strict "${args[@]}" "$file" >"$log" 2>&1; then
    cat "$log" >&2
    fail "kubernetes-validate --strict $file"
  fi
  if grep -v '^INFO .* passed for resource ' "$log" >&2; then
    fail "kubernetes-validate $file: the lines above are not passes"
  fi
  docs="$("$py" -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$file")"
  passes="$(grep -c '^INFO .* passed for resource ' "$log" || true)"
  if [ "$docs" -eq 0 ] || [ "$passes" -ne $((docs * ${#k8s_versions[@]})) ]; then
    fail "kubernetes-validate $file: $passes passes for $docs object(s) x ${#k8s_versions[@]} version(s)"
  fi
  sed 's/^INFO /  /' "$log"
  checked=$((checked + 1))
}

# --- 1. plain manifests ------------------------------------------------------------------
say "1. kubernetes-validate --strict -k ${k8s_versions[*]} on deploy/k8s/*.yaml"
shopt -s nullglob
manifests=("$here"/*.yaml "$here"/*.yml)
shopt -u nullglob
[ "${#manifests[@]}" -gt 0 ] || fail "no manifest in $here"
for file in "${manifests[@]}"; do
  validate_manifests "$file"
done

# --- 2. helm lint ------------------------------------------------------------------------
say "2. helm lint --strict $chart (default values)"
run "$py" "$tools" lint "$chart" --namespace weir --kube-version v1.28.0 || fail "helm lint (default values)"
say "2. helm lint --strict $chart -f ci/observers-values.yaml"
run "$py" "$tools" lint "$chart" --values "$chart/ci/observers-values.yaml" \
  --namespace streaming --kube-version v1.28.0 || fail "helm lint (ci/observers-values.yaml)"

# --- 3. helm template + kubernetes-validate ----------------------------------------------
say "3. helm template weir $chart --namespace weir (default values)"
run "$py" "$tools" template "$chart" --name weir --namespace weir --out "$out/default.yaml" ||
  fail "helm template (default values)"
run "$py" "$tools" voters "$out/default.yaml" || fail "voter list (default values)"
validate_manifests "$out/default.yaml"

say "3. helm template events $chart --namespace streaming -f ci/observers-values.yaml"
run "$py" "$tools" template "$chart" --name events --namespace streaming \
  --values "$chart/ci/observers-values.yaml" --out "$out/observers.yaml" ||
  fail "helm template (ci/observers-values.yaml)"
run "$py" "$tools" voters "$out/observers.yaml" || fail "voter list (ci/observers-values.yaml)"
grep -q '0@events-weir-0.events-weir-headless.streaming.svc.cluster.local:9292' "$out/observers.yaml" ||
  fail "the voter list does not follow the release name and namespace"
validate_manifests "$out/observers.yaml"

# --- 4. plain manifests = chart defaults -------------------------------------------------
say "4. deploy/k8s and the chart's default rendering describe the same objects"
run "$py" "$tools" compare "$here" "$out/default.yaml" || fail "deploy/k8s and the chart differ"

# --- 5. refused values -------------------------------------------------------------------
say "5. the chart refuses voters > replicas"
run "$py" "$tools" template-fails "$chart" --name weir --namespace weir \
  --set-json '{"replicas": 2, "voters": 3}' --expect "must not exceed replicas" ||
  fail "voters > replicas was not refused"

# --- 6. the Kafka listener --------------------------------------------------------------
say "6. Kafka and AMQP clients: listeners, advertised names, Services, no topics created on first use"
run "$py" "$tools" kafka "${manifests[@]}" || fail "Kafka settings (deploy/k8s)"
run "$py" "$tools" kafka "$out/default.yaml" || fail "Kafka settings (default values)"
run "$py" "$tools" kafka "$out/observers.yaml" || fail "Kafka settings (ci/observers-values.yaml)"

# --- 7. security ------------------------------------------------------------------------
say "7. helm lint --strict $chart -f ci/secure-values.yaml"
run "$py" "$tools" lint "$chart" --values "$chart/ci/secure-values.yaml" \
  --namespace weir --kube-version v1.28.0 || fail "helm lint (ci/secure-values.yaml)"
say "7. helm template weir $chart --namespace weir -f ci/secure-values.yaml"
run "$py" "$tools" template "$chart" --name weir --namespace weir \
  --values "$chart/ci/secure-values.yaml" --out "$out/secure.yaml" ||
  fail "helm template (ci/secure-values.yaml)"
validate_manifests "$out/secure.yaml"
run "$py" "$tools" security "$out/secure.yaml" --secret weir-tls --admin-secret weir-admin ||
  fail "security settings (ci/secure-values.yaml)"
run "$py" "$tools" kafka "$out/secure.yaml" || fail "Kafka settings (ci/secure-values.yaml)"
say "7. the chart refuses TLS without a Secret, and authentication required without TLS"
run "$py" "$tools" template-fails "$chart" --name weir --namespace weir \
  --set-json '{"security": {"tls": {"enabled": true}}}' --expect "needs security.tls.secretName" ||
  fail "TLS without a Secret was not refused"
run "$py" "$tools" template-fails "$chart" --name weir --namespace weir \
  --set-json '{"security": {"authentication": "required"}}' --expect "passwords are sent over TLS only" ||
  fail "authentication required without TLS was not refused"

say "OK: $checked manifest file(s) valid against Kubernetes ${k8s_versions[*]}; chart linted, rendered three times, matches deploy/k8s"
say "tools: kubernetes-validate $kv_version; $helm_version; rendered output in $out"
