"""Spatial runtimes: each one file that executes a `Schedule` on open devices."""
