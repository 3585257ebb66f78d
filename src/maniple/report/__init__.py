"""Reports: tables, plots and words for what the runtime measured."""

from maniple.report.batch_report import io_table, summary_lines, unit_table
from maniple.report.timeline import plot_timeline

__all__ = ["io_table", "plot_timeline", "summary_lines", "unit_table"]
