"""Clusters: which devices a run uses (YAML files, command-line shorthands), opened as one."""

from maniple.cluster.cluster import Cluster, open_cluster
from maniple.cluster.spec import (
    ClusterSpec,
    load_cluster,
    parse_cluster_text,
    parse_emulate,
    parse_shorthand,
    with_link,
)

__all__ = [
    "Cluster",
    "ClusterSpec",
    "load_cluster",
    "open_cluster",
    "parse_cluster_text",
    "parse_emulate",
    "parse_shorthand",
    "with_link",
]
