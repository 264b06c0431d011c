"""The report on hand-written runs: grouping over seeds, bold best, Pareto front, the paper,
transfer and exploration sections, latency columns, self-containment, and a browser look."""

from __future__ import annotations

import io
import json
import re
import shutil
import statistics
import sys
import types
from pathlib import Path

import pytest

from cnnbench.report import pareto_front, write_report
from cnnbench.report.document import markdown_to_html
from cnnbench.report.document import read_markdown_table as md_table


def test_seed_groups_are_mean_and_std(table1_report):
    md = table1_report["md"]
    rows = md_table(md, "Results")
    assert len(rows) == 4
    row = next(r for r in rows if r["Optimizer"] == "sgd" and r["LR"] == "0.01")
    mean, std = statistics.fmean([84, 86]), statistics.stdev([84, 86])
    assert row["Test acc % (mean ± std)"] == f"{mean:.2f} ± {std:.2f}"
    assert row["n"] == "2"
    # The best value of a column is bold: the most accurate setting, the smallest model.
    assert f"**{mean:.2f} ± {std:.2f}**" in md
    assert "| **62 k** |" in md
    assert len(md_table(md, "All runs")) == 8


def test_verdict_names_the_most_accurate_setting(table1_report):
    html = table1_report["html_text"]
    head = html.split("<main>", 1)[0]
    assert "mobilenetv2_reduced · sgd · lr 0.01" in head
    assert "85.00 %" in head


def test_pareto_front():
    pts = [(1.0, 50.0), (2.0, 40.0), (3.0, 70.0), (3.0, 60.0), (10.0, 70.0), (20.0, 90.0)]
    assert pareto_front(pts) == [0, 2, 5]
    assert pareto_front([]) == []


def test_recommendation_under_each_budget(table1_report):
    md = table1_report["md"]
    rec = md.split("**Recommendation", 1)[1].split("\n\n", 1)[0]
    # LeNet is the cheapest; the best MobileNet setting wins everything above its cost.
    assert rec.index("lenet5 · adam · lr 0.001") < rec.index("mobilenetv2_reduced · sgd · lr 0.01")
    assert "adam · lr 0.01" not in rec  # dominated
    assert "MACs" in rec  # no latency measured: the budget is compute


def test_paper_comparison_matches_rows(table1_report):
    md = table1_report["md"]
    rows = md_table(md, "Against the paper's Table 1")
    paper = {(r["Architecture"], r["Optimizer"], r["LR"]): r for r in rows}
    assert len(rows) == 4
    sgd = paper[("mobilenetv2_reduced", "sgd", "0.01")]
    assert sgd["Paper %"] == "83.27" and sgd["Δ pp"] == "+1.73"
    assert paper[("lenet5", "adam", "0.001")]["Paper %"] == "63"
    assert "resnet34 sgd lr 0.1" in md  # named as missing


def test_no_paper_section_for_other_datasets(tmp_path, make_run):
    make_run(tmp_path / "s", dataset="cifar100", test_acc=0.3)
    md = write_report(tmp_path / "s")["markdown"].read_text()
    assert "Table 1" not in md and "## Results" in md


def test_latency_columns_only_with_bench(table1_report, table1_study, monkeypatch):
    assert "p50 ms" not in table1_report["md"]

    fake = types.ModuleType("cnnbench.bench")

    def latency_summary(run_dir):
        data = json.loads((Path(run_dir) / "bench.json").read_text())
        return {
            "p50_ms": data["p50"],
            "p99_ms": data["p50"] * 1.5,
            "backend": "eager",
            "threads": 1,
        }

    fake.latency_summary = latency_summary
    monkeypatch.setitem(sys.modules, "cnnbench.bench", fake)
    for run in table1_study.iterdir():
        if run.is_dir() and (run / "summary.json").is_file():
            p50 = 0.2 if run.name.startswith("lenet5") else 4.0
            (run / "bench.json").write_text(json.dumps({"p50": p50}))
    paths = write_report(table1_study)
    md = paths["markdown"].read_text()
    rows = md_table(md, "Results")
    lenet = next(r for r in rows if r["Architecture"] == "lenet5")
    assert lenet["p50 ms (batch 1)"] == "0.200" and lenet["p99 ms"] == "0.300"
    assert "batch-1 CPU latency" in md
    rec = md.split("**Recommendation", 1)[1].split("\n\n", 1)[0]
    assert "0.200 ms" in rec and "4.00 ms" in rec
    assert "eager with 1 thread(s)" in md


def test_transfer_section(tmp_path, make_run):
    parent = make_run(
        tmp_path / "parents",
        model="mobilenetv2",
        dataset="cifar100",
        test_acc=0.6,
        optimizer="sgd",
        lr=0.1,
    )
    study = tmp_path / "transfer"
    for policy, acc in (("head", 0.45), ("full", 0.75)):
        make_run(
            study,
            model="mobilenetv2",
            optimizer="sgd",
            lr=0.01,
            test_acc=acc,
            name=f"child-{policy}",
            transfer={"parent": str(parent), "policy": policy, "k": 2},
        )
    md = write_report(study)["markdown"].read_text()
    rows = {r["Child run"]: r for r in md_table(md, "Transfer learning")}
    assert rows["child-full"]["Parent acc %"] == "60.00"
    assert rows["child-full"]["Child acc %"] == "75.00"
    assert rows["child-full"]["Child / parent"] == "1.250"
    assert (
        rows["child-head"]["Policy"] == "head" and rows["child-head"]["Child / parent"] == "0.750"
    )


def test_explore_section_embeds_listed_figures(table1_study):
    ex = table1_study / "explore"
    (ex / "fig").mkdir(parents=True)
    (ex / "fig" / "samples.png").write_bytes(_tiny_png())
    (ex / "explore.json").write_text(
        json.dumps(
            {
                "figures": [
                    {"title": "Sample grid", "path": "fig/samples.png"},
                    {"title": "missing", "path": "fig/nope.png"},
                    {"no": "path"},
                ],
                "summary_markdown": "### Class balance\n\n- 10 classes\n- **balanced**\n",
            }
        )
    )
    paths = write_report(table1_study)
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    assert "## Data exploration" in md and "- **balanced**" in md
    assert "<strong>balanced</strong>" in html and "Sample grid" in html
    assert len(list((paths["figures"]).glob("explore-*.png"))) == 1


def test_explore_json_with_missing_keys_is_fine(table1_study):
    (table1_study / "explore").mkdir()
    (table1_study / "explore" / "explore.json").write_text("{}")
    assert "## Data exploration" not in write_report(table1_study)["markdown"].read_text()


def test_html_is_self_contained(table1_report):
    html = table1_report["html_text"]
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count("data:image/png;base64,") >= 5


def test_incomplete_runs_are_listed_not_reported(table1_study):
    (table1_study / "study.yaml").write_text(
        "name: paperish\nvaried: [lr, model, optimizer, seed]\nruns:\n"
        + "".join(f"  - {{name: {p.name}}}\n" for p in sorted(table1_study.iterdir()))
        + "  - {name: resnet34-sgd-lr0.1-s0}\n"
    )
    md = write_report(table1_study)["markdown"].read_text()
    assert "1 run(s) not complete yet" in md and "resnet34-sgd-lr0.1-s0" in md


def test_markdown_to_html_subset():
    out = markdown_to_html("# T\n\ntext `x` **b**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- i\n- j")
    assert "<h3>T</h3>" in out and "<code>x</code>" in out and "<strong>b</strong>" in out
    assert "<td>1</td>" in out and "<li>j</li>" in out
    assert "<script" not in markdown_to_html("<script>alert(1)</script>")


def _tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- a real browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).is_file() else None)
    if path is None:
        pytest.skip("headless Chromium not found (install the chromium package)")
    return path


@pytest.mark.browser
def test_report_renders_in_headless_chromium(table1_report, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    from PIL import Image, ImageStat

    html = table1_report["html"]
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(html.resolve().as_uri())
            assert page.title() == "cnnbench study: paperish"
            # Every embedded figure decoded (naturalWidth > 0), no request left the file.
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert widths and all(w > 100 for w in widths)
            page.click("#results th:nth-child(6)")  # sort by test accuracy
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert shot.stat().st_size > 30_000
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 900)
    assert ImageStat.Stat(img).stddev[0] > 10  # not a blank or uniform page
