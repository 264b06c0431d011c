"""Studies: a YAML grid of runs, expanded, validated, trained resumably, then reported."""

from cnnbench.study.runner import STUDY_FILE, StudyResult, run_study, study_dir, write_study_file
from cnnbench.study.spec import Study, load_study, parse_study, run_name

__all__ = [
    "STUDY_FILE",
    "Study",
    "StudyResult",
    "load_study",
    "parse_study",
    "run_name",
    "run_study",
    "study_dir",
    "write_study_file",
]
