"""Reports of a study: one self-contained HTML page and its Markdown twin (with PNG figures)."""

from cnnbench.report.build import ReportError, build_document, write_report
from cnnbench.report.collect import PAPER_TABLE1, StudyData, load_study_data, pareto_front

__all__ = [
    "PAPER_TABLE1",
    "ReportError",
    "StudyData",
    "build_document",
    "load_study_data",
    "pareto_front",
    "write_report",
]
