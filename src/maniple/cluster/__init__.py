"""Clusters: which devices a run uses (YAML files, command-line shorthands), opened as one."""

from maniple.cluster.cluster import Cluster, open_cluster
from maniple.cluster.shorthand import parse_emulate, parse_shorthand, with_link
from maniple.cluster.spec import ClusterSpec, load_cluster, parse_cluster_text

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
