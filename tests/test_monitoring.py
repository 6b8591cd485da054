"""The monitoring files of docs/monitoring/ hold together with what the peers really export.

The Grafana dashboard loads, every panel has a query on the provisioned datasource variable, and
every metric name its queries use is one a real peer process exports (scraped and parsed with
prometheus_client's parser, as Prometheus would see it). The Prometheus scrape configuration finds
the compose peers by their service name on the gossip port and reads the /metrics path over HTTPS
with the cluster CA; Grafana's provisioning points at that Prometheus and at the mounted dashboard.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from peer.config import split_hostport
from peer.http.metrics import METRICS_PATH
from peer.security.certs import PEER_TLS_NAME
from tests.cluster import Cluster, PeerProc
from tests.test_deploy import dockerfile_env, environment, named_mount, service, volume_mounts

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "docs" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
SCRAPE_CONFIG = MONITORING / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"

# Words of PromQL that are not metric names: aggregation and set operators, modifiers, keywords.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan", "atan2"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", ""),
            "gauge": ("",), "unknown": ("",)}


def dashboard() -> dict[str, Any]:
    doc = json.loads(DASHBOARD.read_text())
    assert isinstance(doc, dict)
    return doc


def data_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that plots something (rows only group), nested ones included."""
    found = []
    for panel in doc["panels"]:
        found += panel.get("panels", []) if panel["type"] == "row" else [panel]
    return found


def queries(doc: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: the panels' targets and the template variables."""
    exprs = [t["expr"] for p in data_panels(doc) for t in p.get("targets", []) if t.get("expr")]
    for var in doc["templating"]["list"]:
        query = var.get("query")
        if var["type"] == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers left once strings, label matchers, ranges
    and grouping clauses are removed, that are not functions (followed by "(") or PromQL words."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r" \1 ", text)  # Grafana's variable query
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def test_metric_names_are_found_in_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (api, le) (rate(dfs_request_duration_seconds_bucket'
            '{code!~"OK|2..", instance=~"$instance"}[$__rate_interval]))) / on (api) group_left up'
            ' - time() + (dfs_members > 0)')

    assert metric_names(expr) == {"dfs_request_duration_seconds_bucket", "up", "dfs_members"}
    assert metric_names("label_values(dfs_ring_peers, instance)") == {"dfs_ring_peers"}


# -- the dashboard -------------------------------------------------------------------------------


def test_the_dashboard_loads_and_every_panel_has_a_query() -> None:
    doc = dashboard()
    panels = data_panels(doc)
    ids = [p["id"] for p in doc["panels"]]

    assert doc["title"] and doc["uid"] and panels
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels:
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert exprs and all(exprs), f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


def test_the_dashboard_picks_its_prometheus_datasource_by_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_the_dashboard_plots_each_area_the_operator_needs() -> None:
    """Cluster health, throughput and latency, disk, repair, errors: the families each area rests on."""
    used = set().union(*map(metric_names, queries(dashboard())))

    assert {"dfs_members", "dfs_ring_peers", "dfs_metadata_healthy"} <= used
    assert {"dfs_requests_total", "dfs_request_duration_seconds_bucket", "dfs_received_bytes_total",
            "dfs_sent_bytes_total"} <= used
    assert {"dfs_disk_total_bytes", "dfs_disk_free_bytes"} <= used
    assert {"dfs_under_replicated_chunks", "dfs_repaired_chunks_total", "dfs_handed_off_chunks_total",
            "dfs_scrubbed_bytes_total", "dfs_gc_deleted_chunks_total", "dfs_worker_errors_total",
            "dfs_worker_last_run_timestamp_seconds"} <= used
    assert {"dfs_auth_failures_total", "dfs_metadata_errors_total"} <= used
    assert any("histogram_quantile" in q and "dfs_request_duration_seconds_bucket" in q for q in queries(dashboard()))
    assert any(re.search(r'dfs_requests_total\{code!~"OK', q) for q in queries(dashboard())), "non-OK codes"


@pytest.fixture(scope="module")
def one_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerProc]:
    """A real peer process (--no-auth: /metrics is open) after a small workload, so the request
    families carry samples too."""
    cluster = Cluster(tmp_path_factory.mktemp("monitoring"), replicas=1)
    try:
        peer = cluster.add_peer()
        with peer.client() as client:
            client.upload(b"monitoring" * 1000, name="monitoring/a")
            assert client.read("monitoring/a") == b"monitoring" * 1000
        yield peer
    finally:
        cluster.close()


def exported_names(peer: PeerProc) -> tuple[set[str], set[str]]:
    """(every sample name the peer's families can carry, by type; the sample names it carries now)."""
    with urllib.request.urlopen(f"http://{peer.gossip_addr}{METRICS_PATH}", timeout=10) as reply:
        assert reply.status == 200
        body = reply.read().decode()
    families = list(text_string_to_metric_families(body))
    possible = {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}
    present = {s.name for f in families for s in f.samples}
    return possible, present


def test_every_metric_the_dashboard_queries_is_exported(one_peer: PeerProc) -> None:
    possible, present = exported_names(one_peer)
    used = set().union(*map(metric_names, queries(dashboard())))

    assert used, "the dashboard queries no metric"
    assert present <= possible
    assert not used - possible, f"the dashboard queries names no peer exports: {sorted(used - possible)}"
    # Families with labels appear once something was counted; the workload made these.
    assert {"dfs_requests_total", "dfs_request_duration_seconds_bucket", "dfs_received_bytes_total",
            "dfs_sent_bytes_total", "dfs_members", "dfs_worker_last_run_timestamp_seconds"} <= present


def test_every_metric_the_dashboard_queries_is_documented() -> None:
    """docs/METRICS.md lists counters with `_total` and histograms by their family name."""
    documented = set(re.findall(r"^\| `(dfs_[a-z0-9_]+)`", (ROOT / "docs" / "METRICS.md").read_text(), re.MULTILINE))
    used = set().union(*map(metric_names, queries(dashboard())))
    undocumented = {n for n in used if n not in documented and re.sub(r"_(bucket|sum|count)$", "", n) not in documented}

    assert not undocumented, sorted(undocumented)


# -- the Prometheus scrape configuration ---------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def scrape_job(config: dict[str, Any]) -> dict[str, Any]:
    jobs = [job for job in config["scrape_configs"] if job.get("dns_sd_configs")]
    assert len(jobs) == 1, config["scrape_configs"]
    return jobs[0]


def test_the_scrape_config_finds_the_compose_peers_on_their_gossip_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    job = scrape_job(config)
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}
    _, gossip_port = split_hostport(env["DFS_GOSSIP_ADDR"])
    seed_service = env["DFS_SEEDS"].split(":")[0]

    assert job.get("metrics_path", "/metrics") == METRICS_PATH
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["peer"] and seed_service == "peer" and "peer" in compose["services"]
    assert sd.get("type", "SRV") == "A" and sd["port"] == gossip_port


def test_the_scrape_config_verifies_the_peers_like_the_compose_file_serves_them(compose: dict[str, Any]) -> None:
    """The compose peers serve HTTPS with the dev CA: Prometheus verifies that CA and the name every
    peer certificate carries, and the CA file is where the compose file puts it for Prometheus."""
    job = scrape_job(yaml.safe_load(SCRAPE_CONFIG.read_text()))
    env = environment(service(compose, "peer"))
    ca_dir, _ = named_mount(compose, service(compose, "prometheus"), "monitoring-ca")
    copied_to, _ = named_mount(compose, service(compose, "monitoring-ca"), "monitoring-ca")
    certs_at, _ = named_mount(compose, service(compose, "monitoring-ca"), "certs")

    assert env["DFS_TLS_CA"] == f"{certs_at}/ca.crt"
    assert job["scheme"] == "https"
    assert job["tls_config"]["server_name"] == PEER_TLS_NAME
    assert job["tls_config"]["ca_file"] == f"{ca_dir}/ca.crt"
    assert service(compose, "monitoring-ca")["entrypoint"][-1] == f"{copied_to}/ca.crt"
    assert not job["tls_config"].get("insecure_skip_verify", False)


# -- Grafana provisioning ------------------------------------------------------------------------


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = service(compose, "grafana")
    mounts = {target: source for source, target, _ in volume_mounts(grafana)}
    datasources = yaml.safe_load((MONITORING / "grafana" / "datasources" / "prometheus.yml").read_text())
    providers = yaml.safe_load((MONITORING / "grafana" / "dashboards" / "dfs.yml").read_text())
    prometheus_port = next(int(str(p).rsplit(":", 1)[1]) for p in service(compose, "prometheus")["ports"])

    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = providers["providers"]
    dashboard_dir = provider["options"]["path"]
    assert any(target.startswith(dashboard_dir + "/") and src == "./docs/monitoring/grafana-dashboard.json"
               for target, src in mounts.items()), mounts
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] in mounts
