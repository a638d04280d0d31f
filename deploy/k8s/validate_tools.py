"""Offline helpers for validate.sh, run with the virtualenv's Python.

  lint CHART [--values FILE] [--namespace NS] [--kube-version V]
      `helm lint --strict` through helm-python-sdk (the Helm SDK, no helm binary).
  template CHART --name NAME --namespace NS [--values FILE] --out FILE
      `helm template`: the rendered manifests (tests included) as one YAML stream.
  template-fails CHART --name NAME --namespace NS --set-json JSON --expect TEXT
      Rendering with these values must fail with a message containing TEXT.
  no-duplicate-keys FILE...
      Every YAML document parses with no key given twice in one mapping (PyYAML, and so
      kubernetes-validate, would silently keep the last).
  compare PLAIN_DIR RENDERED
      The plain manifests and the chart's default rendering (release weir, namespace
      weir) describe the same objects: equal spec / data, apart from Helm's own labels.
  voters RENDERED
      Prints each StatefulSet's replicas and the voter list of its ConfigMap.
  kafka FILE...
      Each StatefulSet serves Kafka clients as a cluster must: a `kafka` container port,
      WEIR_KAFKA_LISTEN on it in its ConfigMap, WEIR_KAFKA_ADVERTISE naming the pod on
      its headless Service at that port, the port on the headless and client Services,
      and WEIR_AUTO_CREATE_TOPICS=false; and AMQP clients: an `amqp` container port,
      WEIR_AMQP_LISTEN on it (with TLS: WEIR_AMQPS_LISTEN on it and no plaintext
      listener), the port on both Services.
  security RENDERED --secret NAME --admin-secret NAME
      Each StatefulSet of ci/secure-values.yaml's rendering is secured as asked: the TLS
      Secret mounted read-only and every WEIR_TLS_* variable pointing into it, SCRAM
      required, authorization on, the super users, the bootstrap admin from its Secret
      (secretKeyRef), and probes on the admin port's /health over https; the helm test
      pod trusts the CA and runs as the admin.

Exit status: 0 when the check passes, 1 when it fails (with the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml


def die(message: str) -> None:
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def load_values(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    return values or {}


# --- Helm ------------------------------------------------------------------------------


def cmd_lint(args: argparse.Namespace) -> None:
    import helm_python as helm

    report = helm.lint(
        args.chart,
        load_values(args.values),
        strict=True,
        namespace=args.namespace,
        kube_version=args.kube_version,
    )
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    bad = 0
    for message in report.get("messages", []):
        severity = int(message.get("severity", 0))
        text = str(message.get("error", "")).strip()
        print(f"  [{names.get(severity, severity)}] {message.get('path', '')}: {text}")
        # --strict: warnings count as failures too.
        if severity >= 2:
            bad += 1
    errors = report.get("errors") or []
    linted = int(report.get("total_charts_linted", 0))
    print(f"  {linted} chart(s) linted, {bad} warning(s)/error(s), {len(errors)} error(s)")
    if linted < 1 or bad or errors:
        die(f"helm lint {args.chart}")


def render(chart_path: str, values: dict[str, Any] | None, name: str, namespace: str) -> str:
    import helm_python as helm

    with helm.Chart.load(chart_path) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=name, namespace=namespace, is_install=True)
    parts = []
    for path in sorted(rendered):
        text = rendered[path]
        # NOTES.txt is shown to the user, not applied; partials render to nothing.
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        parts.append(f"---\n# Source: {path}\n{text.strip()}\n")
    if not parts:
        die(f"{chart_path} rendered no manifest")
    return "".join(parts)


def cmd_template(args: argparse.Namespace) -> None:
    import helm_python as helm

    try:
        text = render(args.chart, load_values(args.values), args.name, args.namespace)
    except helm.HelmError as e:
        die(f"helm template {args.chart}: {type(e).__name__}: {e}")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    print(f"  rendered {len(docs)} object(s) to {args.out}: {kinds}")


def cmd_template_fails(args: argparse.Namespace) -> None:
    import helm_python as helm

    values = json.loads(args.set_json)
    try:
        render(args.chart, values, args.name, args.namespace)
    except helm.HelmError as e:
        if args.expect not in str(e):
            die(f"rendering {values} failed, but not with {args.expect!r}: {e}")
        print(f"  refused as expected: {str(e).strip().splitlines()[-1]}")
        return
    die(f"rendering {values} succeeded; it must be refused ({args.expect!r})")


# --- YAML ------------------------------------------------------------------------------


class NoDuplicatesLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key given twice."""


def _mapping_no_duplicates(loader: NoDuplicatesLoader, node: yaml.MappingNode) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=True)


NoDuplicatesLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates
)


def cmd_no_duplicate_keys(args: argparse.Namespace) -> None:
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            try:
                docs = [d for d in yaml.load_all(f, Loader=NoDuplicatesLoader) if d]
            except yaml.YAMLError as e:
                die(f"{path}: {e}")
        if not docs:
            die(f"{path}: no YAML document")
        print(f"  {path}: {len(docs)} document(s), no duplicate keys")


# --- Plain manifests against the chart ------------------------------------------------

# Labels and annotations only the chart sets (release bookkeeping, config checksum).
HELM_ONLY = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "checksum/config",
}


def strip_helm_only(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in HELM_ONLY:
                continue
            out[key] = strip_helm_only(item)
        return out
    if isinstance(value, list):
        return [strip_helm_only(item) for item in value]
    return value


def normalise(value: Any) -> Any:
    """Scalars as strings, so `port: 9292` equals the chart's `port: "9292"` only where
    Kubernetes would read them alike (an IntOrString, a quantity)."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return value


def objects(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in a:
                out.append(f"{path}.{key}: only in the chart")
            elif key not in b:
                out.append(f"{path}.{key}: only in the plain manifests")
            else:
                out.extend(diff(a[key], b[key], f"{path}.{key}"))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} item(s) in the plain manifests, {len(b)} in the chart"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out.extend(diff(x, y, f"{path}[{i}]"))
        return out
    return [] if a == b else [f"{path}: {a!r} (plain) != {b!r} (chart)"]


def cmd_compare(args: argparse.Namespace) -> None:
    plain_docs: list[dict[str, Any]] = []
    for name in sorted(os.listdir(args.plain_dir)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(args.plain_dir, name), encoding="utf-8") as f:
                plain_docs.extend(d for d in yaml.safe_load_all(f) if d)
    with open(args.rendered, encoding="utf-8") as f:
        chart_docs = [d for d in yaml.safe_load_all(f) if d]
    plain = objects(plain_docs)
    chart = objects(chart_docs)
    # The plain manifests create their namespace; Helm installs into an existing one
    # (`--create-namespace`). `helm test` pods exist only in the chart.
    only_plain = {k for k in plain if k not in chart and k[0] != "Namespace"}
    only_chart = {
        k
        for k in chart
        if k not in plain
        and "helm.sh/hook" not in (chart[k]["metadata"].get("annotations") or {})
    }
    problems = [f"{k[0]}/{k[1]}: only in the plain manifests" for k in sorted(only_plain)]
    problems += [f"{k[0]}/{k[1]}: only in the chart" for k in sorted(only_chart)]
    compared = 0
    for key in sorted(set(plain) & set(chart)):
        compared += 1
        for part in ("spec", "data"):
            a = normalise(strip_helm_only(plain[key].get(part)))
            b = normalise(strip_helm_only(chart[key].get(part)))
            problems.extend(f"{key[0]}/{key[1]} {part}{d}" for d in diff(a, b))
        for field in ("namespace",):
            if plain[key]["metadata"].get(field) != chart[key]["metadata"].get(field):
                problems.append(f"{key[0]}/{key[1]}: metadata.{field} differs")
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    if problems or compared == 0:
        die(f"the plain manifests and the chart's default rendering differ ({len(problems)})")
    print(f"  {compared} object(s) alike in {args.plain_dir} and {args.rendered}")


def cmd_voters(args: argparse.Namespace) -> None:
    with open(args.rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    configs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    found = 0
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        container = sts["spec"]["template"]["spec"]["containers"][0]
        for source in container.get("envFrom", []):
            config = configs.get(source.get("configMapRef", {}).get("name"))
            if not config:
                continue
            voters = config["data"]["WEIR_CONTROLLER_VOTERS"].split(",")
            replicas = int(sts["spec"]["replicas"])
            ids = [int(v.split("@", 1)[0]) for v in voters]
            if ids != list(range(len(ids))) or len(ids) > replicas:
                die(f"voter ids {ids} are not pods 0..{len(ids) - 1} of {replicas}")
            observers = replicas - len(ids)
            print(
                f"  {sts['metadata']['name']}: {replicas} replica(s), {len(ids)} voter(s), "
                f"{observers} observer(s): {','.join(voters)}"
            )
            found += 1
    if not found:
        die(f"{args.rendered}: no StatefulSet with a voter list")


def cmd_kafka(args: argparse.Namespace) -> None:
    docs = []
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    configs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    services = [d for d in docs if d["kind"] == "Service"]
    found = 0
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        name = sts["metadata"]["name"]
        pod = sts["spec"]["template"]
        container = pod["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if "kafka" not in ports:
            die(f"StatefulSet {name}: no container port named kafka")
        port = ports["kafka"]
        data: dict[str, Any] = {}
        for source in container.get("envFrom", []):
            config = configs.get(source.get("configMapRef", {}).get("name"))
            if config:
                data.update(config.get("data", {}))
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if data.get("WEIR_KAFKA_LISTEN") != f"0.0.0.0:{port}":
            die(f"StatefulSet {name}: WEIR_KAFKA_LISTEN is {data.get('WEIR_KAFKA_LISTEN')!r}, "
                f"not 0.0.0.0:{port}")
        if str(data.get("WEIR_AUTO_CREATE_TOPICS")).lower() != "false":
            die(f"StatefulSet {name}: WEIR_AUTO_CREATE_TOPICS is "
                f"{data.get('WEIR_AUTO_CREATE_TOPICS')!r}, not false")
        advertise = env.get("WEIR_KAFKA_ADVERTISE") or ""
        headless = sts["spec"]["serviceName"]
        if not (advertise.startswith(f"$(POD_NAME).{headless}.") and advertise.endswith(f":{port}")):
            die(f"StatefulSet {name}: WEIR_KAFKA_ADVERTISE {advertise!r} does not name the pod "
                f"on {headless} at port {port}")
        labels = pod["metadata"]["labels"]
        selecting = [s for s in services
                     if all(labels.get(k) == v for k, v in s["spec"].get("selector", {}).items())]
        for kind, wanted in (("headless", True), ("client", False)):
            matching = [s for s in selecting if (s["spec"].get("clusterIP") == "None") == wanted]
            if not any(p.get("targetPort") == "kafka" for s in matching for p in s["spec"]["ports"]):
                die(f"StatefulSet {name}: no {kind} Service exposes the kafka port")
        if "amqp" not in ports:
            die(f"StatefulSet {name}: no container port named amqp")
        amqp = ports["amqp"]
        tls = bool(data.get("WEIR_TLS_CERT"))
        # With TLS, AMQP only as amqps; else plaintext, on the port the pods name.
        wanted = ({"WEIR_AMQP_LISTEN": "none", "WEIR_AMQPS_LISTEN": f"0.0.0.0:{amqp}"} if tls
                  else {"WEIR_AMQP_LISTEN": f"0.0.0.0:{amqp}"})
        for key, value in wanted.items():
            if data.get(key) != value:
                die(f"StatefulSet {name}: {key} is {data.get(key)!r}, not {value}")
        for kind, headless_wanted in (("headless", True), ("client", False)):
            matching = [s for s in selecting
                        if (s["spec"].get("clusterIP") == "None") == headless_wanted]
            if not any(p.get("targetPort") == "amqp" for s in matching for p in s["spec"]["ports"]):
                die(f"StatefulSet {name}: no {kind} Service exposes the amqp port")
        print(f"  {name}: Kafka on :{port}, advertised as {advertise}, topics created explicitly; "
              f"AMQP{'S' if tls else ''} on :{amqp}")
        found += 1
    if not found:
        die(f"{' '.join(args.files)}: no StatefulSet")


def cmd_security(args: argparse.Namespace) -> None:
    with open(args.rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    configs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    found = 0
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        name = sts["metadata"]["name"]
        spec = sts["spec"]["template"]["spec"]
        container = spec["containers"][0]
        data: dict[str, Any] = {}
        for source in container.get("envFrom", []):
            config = configs.get(source.get("configMapRef", {}).get("name"))
            if config:
                data.update(config.get("data", {}))
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        secret = [v for v in volumes.values() if v.get("secret", {}).get("secretName") == args.secret]
        if len(secret) != 1:
            die(f"StatefulSet {name}: the Secret {args.secret} is not a volume")
        items = {i["key"] for i in secret[0]["secret"].get("items", [])}
        if items != {"tls.crt", "tls.key", "ca.crt"}:
            die(f"StatefulSet {name}: the TLS volume holds {sorted(items)}")
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] == secret[0]["name"]]
        if len(mounts) != 1 or not mounts[0].get("readOnly"):
            die(f"StatefulSet {name}: the TLS Secret is not mounted read-only: {mounts}")
        tls_dir = mounts[0]["mountPath"]
        wanted = {
            "WEIR_TLS_CERT": f"{tls_dir}/tls.crt",
            "WEIR_TLS_KEY": f"{tls_dir}/tls.key",
            "WEIR_TLS_CA": f"{tls_dir}/ca.crt",
            "WEIR_TLS_CLIENT_CA": f"{tls_dir}/ca.crt",
            "WEIR_AUTHENTICATION": "required",
            "WEIR_AUTHORIZATION": "on",
            "WEIR_SUPER_USERS": "User:ops,User:deploy",
        }
        for key, value in wanted.items():
            if data.get(key) != value:
                die(f"StatefulSet {name}: {key} is {data.get(key)!r}, not {value!r}")
        env = {e["name"]: e for e in container.get("env", [])}
        for var, key in (("WEIR_ADMIN_USER", "user"), ("WEIR_ADMIN_PASSWORD", "pass")):
            ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
            if ref != {"name": args.admin_secret, "key": key}:
                die(f"StatefulSet {name}: {var} is not the key {key} of {args.admin_secret}: {ref}")
        admin_port = {p["name"]: p["containerPort"] for p in container["ports"]}["admin"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container.get(probe, {}).get("httpGet", {})
            if (get.get("scheme"), get.get("path"), get.get("port")) != ("HTTPS", "/health", admin_port):
                die(f"StatefulSet {name}: {probe} is not https /health on {admin_port}: {container.get(probe)}")
        print(f"  {name}: TLS from Secret {args.secret} at {tls_dir} (read-only), authentication "
              f"required, authorization on, admin from {args.admin_secret}, https probes")
        found += 1
    if not found:
        die(f"{args.rendered}: no StatefulSet")
    tests = [d for d in docs if d["kind"] == "Pod"]
    for pod in tests:
        env = {e["name"]: e for e in pod["spec"]["containers"][0].get("env", [])}
        if not {"WEIR_TLS_CA", "WEIR_USER", "WEIR_PASSWORD"} <= env.keys():
            die(f"test pod {pod['metadata']['name']} lacks the CA or the admin: {sorted(env)}")
    print(f"  {len(tests)} test pod(s) trust the CA and run as the admin")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lint")
    p.add_argument("chart")
    p.add_argument("--values")
    p.add_argument("--namespace", default="default")
    p.add_argument("--kube-version")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("template")
    p.add_argument("chart")
    p.add_argument("--name", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--values")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_template)

    p = sub.add_parser("template-fails")
    p.add_argument("chart")
    p.add_argument("--name", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--set-json", required=True)
    p.add_argument("--expect", required=True)
    p.set_defaults(func=cmd_template_fails)

    p = sub.add_parser("no-duplicate-keys")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_no_duplicate_keys)

    p = sub.add_parser("compare")
    p.add_argument("plain_dir")
    p.add_argument("rendered")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("voters")
    p.add_argument("rendered")
    p.set_defaults(func=cmd_voters)

    p = sub.add_parser("kafka")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("security")
    p.add_argument("rendered")
    p.add_argument("--secret", required=True)
    p.add_argument("--admin-secret", required=True)
    p.set_defaults(func=cmd_security)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
