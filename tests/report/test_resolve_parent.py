"""The report finds a transfer run's parent the way training does, zoo models included."""

from __future__ import annotations

from cnnbench.report.collect import resolve_parent


def test_a_zoo_parent_resolves_to_its_shipped_entry(_empty_zoo, tmp_path):
    entry = _empty_zoo / "parent-cifar100"
    entry.mkdir()
    (entry / "zoo.json").write_text("{}")
    (entry / "summary.json").write_text("{}")
    assert resolve_parent("zoo:parent-cifar100", tmp_path) == entry
    assert resolve_parent("zoo:no-such-model", tmp_path) is None


def test_a_run_folder_beside_the_study_resolves(tmp_path):
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / "summary.json").write_text("{}")
    assert resolve_parent("parent", tmp_path / "study") == tmp_path / "parent"
