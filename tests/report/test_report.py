"""The report on hand-written runs: grouping over seeds, bold best, Pareto front, the paper,
transfer and exploration sections, latency columns, self-containment, and a browser look."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest

from cnnbench.report import load_study_data, pareto_front, write_report
from cnnbench.report.document import markdown_to_html
from cnnbench.report.document import read_markdown_table as md_table
from cnnbench.study import load_study, write_study_file

REPO = Path(__file__).resolve().parents[2]


def test_seed_groups_are_mean_and_std(table1_report):
    md = table1_report["md"]
    rows = md_table(md, "Results")
    assert len(rows) == 4
    row = next(r for r in rows if r["Optimizer"] == "sgd" and r["LR"] == "0.01")
    mean, std = statistics.fmean([84, 86]), statistics.stdev([84, 86])
    assert row["Test acc %"] == f"{mean:.2f} ± {std:.2f}"  # ± the spread over seeds
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


def test_latency_columns_only_with_bench(table1_report, table1_study, bench_json):
    assert "p50 ms" not in table1_report["md"] and "## What to ship" not in table1_report["md"]
    for run in table1_study.iterdir():
        if run.is_dir() and (run / "summary.json").is_file():
            p50 = 0.2 if run.name.startswith("lenet5") else 4.0
            lat = {"onnxruntime": (p50, p50 * 1.5), "onnxruntime-int8": (p50 / 2, p50)}
            # a 2-thread and an eager result are not the batch-1, one-thread ORT figures
            bench = bench_json(lat)
            bench["results"] += [
                {**bench["results"][0], "threads": 2, "p50_ms": p50 / 10},
                {**bench["results"][0], "backend": "eager", "p50_ms": p50 * 3},
            ]
            (run / "bench.json").write_text(json.dumps(bench))
    paths = write_report(table1_study)
    md = paths["markdown"].read_text()
    rows = md_table(md, "Results")
    lenet = next(r for r in rows if r["Architecture"] == "lenet5")
    # every latency figure says its backend; the cost axis is ORT fp32 (what serve runs)
    assert lenet["ORT fp32 p50 / p99 ms"] == "0.200 / 0.300"
    assert lenet["ORT int8 p50 / p99 ms"] == "0.100 / 0.200"
    assert lenet["PyTorch eager p50 / p99 ms"] == "0.600 / 0.300"
    assert "batch-1 latency p50, 1 thread, ORT fp32 (ms)" in md
    front = md.split("**Pareto front:**", 1)[1].split("\n\n", 1)[0]
    assert "0.200 ms" in front and "4.00 ms" in front
    assert "ORT fp32 (onnxruntime), ORT int8 (onnxruntime-int8), PyTorch eager (eager)" in md
    runs = {r["Run"]: r for r in md_table(md, "All runs")}
    assert runs["lenet5-adam-lr0.001-s0"]["ORT int8 p99 ms"] == "0.200"


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
    assert rows["child-full"]["Parent acc %"] == "60.00 ± 0.49"
    assert rows["child-full"]["Child acc %"] == "75.00 ± 0.43"
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


# ---------------------------------------------------------------- uncertainty, verdicts, zoo
def _one_class(n: int = 10_000) -> list[int]:
    return [n] + [0] * 9  # every prediction in one class


def test_every_accuracy_has_its_standard_error(tmp_path, make_run):
    study = tmp_path / "one-seed"
    make_run(study, test_acc=0.61)
    make_run(study, model="mobilenetv2_reduced", optimizer="sgd", lr=0.01, test_acc=0.84)
    paths = write_report(study)
    md = paths["markdown"].read_text()
    summary = json.loads((study / "lenet5-adam-lr0.001-s0" / "summary.json").read_text())
    se, val_se = summary["test_acc_se"], math.sqrt(0.62 * 0.38 / 5000)
    row = next(r for r in md_table(md, "Results") if r["Architecture"] == "lenet5")
    assert row["Test acc %"] == f"61.00 ± {100 * se:.2f}" and row["n"] == "1"
    assert row["Best val acc %"] == f"62.00 ± {100 * val_se:.2f}"
    run = {r["Run"]: r for r in md_table(md, "All runs")}["lenet5-adam-lr0.001-s0"]
    assert run["Test acc %"] == f"61.00 ± {100 * se:.2f}"
    assert "± 0.37, binomial SE of 1 run" in md.split("## Results", 1)[0]  # the verdict
    paper = {r["Architecture"]: r for r in md_table(md, "Against the paper's Table 1")}
    assert paper["lenet5"]["Ours %"] == f"61.00 ± {100 * se:.2f} (SE, n=1)"


def test_runs_that_did_not_learn_are_marked_and_never_recommended(tmp_path, make_run):
    study = tmp_path / "dnl"
    # The cheapest and fastest run is at chance with every prediction in one class: without
    # the verdict it would be on the Pareto front and the pick under every tight budget.
    make_run(study, optimizer="sgd", lr=0.001, test_acc=0.10, test_pred_counts=_one_class(),
             latency={"onnxruntime": (0.05, 0.08)})  # fmt: skip
    # A summary that says so itself (the trainer writes the key) is taken at its word.
    make_run(study, optimizer="adadelta", lr=0.01, test_acc=0.40, latency={"onnxruntime": (0.05, 0.08)},
             did_not_learn="only 3 of 10 classes are ever predicted")  # fmt: skip
    make_run(study, model="mobilenetv2_reduced", optimizer="sgd", lr=0.01, test_acc=0.80,
             params=1_236_746, macs=52_728_320, latency={"onnxruntime": (0.9, 1.2)})  # fmt: skip
    md = write_report(study)["markdown"].read_text()
    rows = {(r["Architecture"], r["Optimizer"]): r for r in md_table(md, "Results")}
    sgd = rows[("lenet5", "sgd")]
    assert sgd["Note"].startswith("did not learn: test accuracy 10.00% is not above chance")
    assert rows[("lenet5", "adadelta")]["Note"] == (
        "did not learn: only 3 of 10 classes are ever predicted"
    )
    assert rows[("mobilenetv2_reduced", "sgd")]["Note"] == ""
    # never "best": the smallest latency / MACs / params in bold belong to the model that learned
    assert "| **0.050 / 0.080** |" not in md and "**62 k**" not in md
    ship = {r["p50 budget"]: r for r in md_table(md, "What to ship")}
    assert ship["≤ 0.1 ms"]["Ship"].startswith("nothing fits")
    assert ship["≤ 1 ms"]["Ship"] == "mobilenetv2_reduced · sgd · lr 0.01"
    front = md.split("**Pareto front:**", 1)[1].split("\n\n", 1)[0]
    assert "lenet5" not in front
    assert "2 models did not learn** and are kept out of the Pareto front" in md
    assert "binomial test" in md
    left_out = md.split("Left out because they did not learn: ", 1)[1].split(" (see", 1)[0]
    assert left_out == "lenet5 · adadelta · lr 0.01, lenet5 · sgd · lr 0.001"
    assert "**mobilenetv2_reduced · sgd · lr 0.01** is the most accurate" in md
    runs = {r["Run"]: r for r in md_table(md, "All runs")}
    assert runs["lenet5-sgd-lr0.001-s0"]["Note"].startswith("did not learn:")


def test_a_collapsed_run_is_never_the_best_even_when_most_accurate(tmp_path, make_run):
    study = tmp_path / "collapse"
    counts = [6000, 1000, 1000, 1000, 1000] + [0] * 5
    make_run(study, optimizer="sgd", lr=0.1, test_acc=0.50, test_pred_counts=counts)
    make_run(study, optimizer="adam", lr=0.001, test_acc=0.45)
    md = write_report(study)["markdown"].read_text()
    head = md.split("## Results", 1)[0]
    assert "lenet5 · adam · lr 0.001" in head and "50.00 %" not in head
    rows = {r["Optimizer"]: r for r in md_table(md, "Results")}
    assert rows["sgd"]["Note"] == "did not learn: one class takes 60% of the predictions"
    assert "**50.00" not in md  # not bold: the one model that learned has no rival


def test_zoo_models_stand_beside_the_runs(tmp_path, make_run, fake_zoo):
    study = tmp_path / "with-zoo"
    make_run(study, test_acc=0.61, latency={"onnxruntime": (0.1, 0.2)})
    fake_zoo("fastnet_small-cifar10", latency={"onnxruntime": (1.04, 17.05),
             "onnxruntime-int8": (0.6, 2.0)}, int8_acc=0.905)  # fmt: skip
    fake_zoo("fastnet_small-cifar100", dataset="cifar100", test_acc=0.7)  # other dataset
    data = load_study_data(study)
    assert [z.name for z in data.zoo] == ["fastnet_small-cifar10"]
    assert load_study_data(study, zoo=False).zoo == []
    md = write_report(study)["markdown"].read_text()
    rows = md_table(md, "Results")
    zoo = next(r for r in rows if r["From"] == "zoo: fastnet_small-cifar10")
    assert zoo["Architecture"] == "fastnet_small" and zoo["Optimizer"] == "sgd"
    assert zoo["Test acc %"] == f"91.58 ± {100 * math.sqrt(0.9158 * 0.0842 / 1e4):.2f}"
    assert zoo["ORT fp32 p50 / p99 ms"] == "1.04 / 17.05"
    assert zoo["ORT int8 p50 / p99 ms"] == "0.600 / 2.00"
    assert next(r for r in rows if r["Architecture"] == "lenet5")["From"] == "this study"
    assert "fastnet_small-cifar100" not in md
    # on the figure (the front names it) and in the environment table
    front = md.split("**Pareto front:**", 1)[1].split("\n\n", 1)[0]
    assert "**zoo: fastnet_small-cifar10**" in front and "**lenet5 · adam · lr 0.001**" in front
    assert "diamonds are zoo models" in md


def test_recommendation_per_latency_budget(tmp_path, make_run, fake_zoo):
    study = tmp_path / "ship"
    both = {"onnxruntime": (0.20, 0.30), "onnxruntime-int8": (0.12, 0.25)}
    lenet = make_run(study, test_acc=0.61, latency=both, int8_acc=0.605)
    mnv2 = {"onnxruntime": (3.0, 4.5), "onnxruntime-int8": (1.6, 2.4)}
    make_run(study, model="mobilenetv2_reduced", optimizer="sgd", lr=0.01, test_acc=0.84,
             params=1_236_746, macs=52_728_320, latency=mnv2)  # fmt: skip
    fake_zoo("fastnet_small-cifar10", latency={"onnxruntime": (1.04, 17.05),
             "onnxruntime-int8": (0.45, 2.0)}, int8_acc=0.905)  # fmt: skip
    md = write_report(study)["markdown"].read_text()
    ship = {r["p50 budget"]: r for r in md_table(md, "What to ship")}
    assert list(ship) == ["≤ 0.1 ms", "≤ 0.25 ms", "≤ 0.5 ms", "≤ 1 ms", "≤ 2 ms", "≤ 5 ms"]
    assert (
        ship["≤ 0.1 ms"]["Ship"]
        == "nothing fits (fastest: lenet5 · adam · lr 0.001, ORT int8, 0.120 ms)"
    )
    se = 100 * math.sqrt(0.61 * 0.39 / 1e4)
    assert ship["≤ 0.25 ms"] == {
        "p50 budget": "≤ 0.25 ms", "Ship": "lenet5 · adam · lr 0.001", "From": "this study",
        "Backend": "ORT fp32", "Test acc %": f"61.00 ± {se:.2f} (SE)", "p50 ms": "0.200",
        "p99 ms": "0.300", "Serve it": f"`cnnbench serve {lenet}`",
    }  # fmt: skip
    int8_se = 100 * math.sqrt(0.905 * 0.095 / 1e4)
    assert ship["≤ 0.5 ms"]["Ship"] == "zoo: fastnet_small-cifar10"
    assert ship["≤ 0.5 ms"]["From"] == "zoo" and ship["≤ 0.5 ms"]["Backend"] == "ORT int8"
    assert ship["≤ 0.5 ms"]["Test acc %"] == f"90.50 ± {int8_se:.2f} (SE)"  # int8's own
    assert ship["≤ 0.5 ms"]["Serve it"] == "`cnnbench serve fastnet_small-cifar10`"
    assert ship["≤ 2 ms"]["Backend"] == "ORT fp32" and ship["≤ 2 ms"]["p99 ms"] == "17.05"
    assert ship["≤ 5 ms"]["Ship"] == "zoo: fastnet_small-cifar10"  # 91.58 > 84
    # MobileNet's int8 accuracy was never measured: its 1.6 ms int8 figure is never a pick
    assert "int8 accuracy not (so never recommended on int8): mobilenetv2_reduced" in md
    assert "`cnnbench serve` runs the fp32 ONNX model" in md
    head = md.split("## Results", 1)[0]
    assert "What to ship: under a 0.25 ms p50 budget ship **lenet5 · adam · lr 0.001**" in head


def test_paper_table_1_beside_the_quick_grid(tmp_path, make_run):
    """The LeNet-5 optimizer x learning-rate grid of studies/quick.yaml, as the study writes
    it: its Adam 0.001 row is the paper's LeNet-5 row."""
    spec = load_study(REPO / "studies" / "quick.yaml")
    grid = [c for c in spec.runs if c.recipe == "paper"]
    assert len(grid) == 9
    folder = tmp_path / "runs" / spec.name
    write_study_file(spec, folder, "cnnbench study studies/quick.yaml")
    for i, c in enumerate(grid):
        cfg = c.model_dump(mode="json")
        make_run(folder, model=c.model, optimizer=c.optimizer, lr=c.lr, name=c.run_name(),
                 epochs=c.epochs, config=cfg, test_acc=0.30 + 0.02 * i)  # fmt: skip
    md = write_report(folder)["markdown"].read_text()
    assert "6 run(s) not complete yet" in md  # the budget part did not run here
    rows = {(r["Optimizer"], r["LR"]): r for r in md_table(md, "Results")}
    assert rows[("adam", "0.001")]["Paper Table 1 %"] == "63"
    assert {r["Paper Table 1 %"] for k, r in rows.items() if k != ("adam", "0.001")} == {"–"}
    paper = md_table(md, "Against the paper's Table 1")
    assert len(paper) == 1 and paper[0]["Architecture"] == "lenet5"
    assert paper[0]["Paper %"] == "63" and paper[0]["Epochs"] == "2"
    assert paper[0]["Train images"] == "45,000"  # what the summary says (hand-written here)


def test_a_modified_architecture_is_not_the_papers(tmp_path, make_run):
    make_run(tmp_path / "s", config={"model_args": {"activation": "relu", "pool": "max"}})
    assert "Table 1" not in write_report(tmp_path / "s")["markdown"].read_text()
