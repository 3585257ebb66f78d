"""Exact tiled execution: any span of units on any band of rows, stitched equal to the whole."""

from maniple.tiling.bands import Band, speed_weights, split_rows, split_rows_capped, stitch
from maniple.tiling.span import SpanProgram, graph_of
from maniple.tiling.tiled import TiledModel, check_flc

__all__ = [
    "Band",
    "SpanProgram",
    "TiledModel",
    "check_flc",
    "graph_of",
    "speed_weights",
    "split_rows",
    "split_rows_capped",
    "stitch",
]
