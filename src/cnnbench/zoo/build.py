"""Turn a finished run into a zoo entry: slim fp16 weights, the run's records, a measured card.

``add_run(run, name)`` writes ``<zoo>/<name>/`` (never over an existing entry unless
``force``):

1. ``best.pt``: the validation-selected weights in fp16 (floating tensors; BatchNorm
   counters stay integers) with what rebuilds and feeds the model (spec, classes, mean, std,
   input size, dataset, config, epoch); no optimizer state.
2. ``config.yaml``, ``metrics.jsonl`` and ``summary.json`` copied from the run.
3. The shipped weights re-measured: test accuracy on the full test split (and on a fixed
   2,000-image subset, which CI re-checks), then batch-1 latency with ONNX Runtime fp32 and
   int8 on one thread (``cnnbench bench``, in fresh processes) and the int8 model's test
   accuracy (``cnnbench export --int8``).
4. ``zoo.json`` (the card, with the sha256 of ``best.pt``) and ``README.md`` (the same card
   for people).

``measure_entry(entry, what=("robustness",))`` adds the mean corruption accuracy
(``cnnbench robustness``, the default protocol) to the card as ``robustness`` (and writes the
entry's ``robustness.json`` and figures). The card's ``sha256`` is of ``best.pt`` alone, so
new card fields never invalidate the shipped weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from cnnbench.fileio import write_json_atomic, write_text_atomic
from cnnbench.rundir import RunDir, RunDirError, checkpoint_dataset
from cnnbench.train.checkpoint import save_checkpoint
from cnnbench.zoo import sha256_of

CHECK_SUBSET = 2000  # test images of the fixed subset CI re-measures (seed 0)
# what `cnnbench zoo measure` can measure; latency includes the ratio, which alone is seconds
MEASURES = ("latency", "ratio", "int8", "robustness")
DEFAULT_MEASURES = ("latency", "int8")
_KEEP = ("model_spec", "config", "epoch", "best_val_acc", "best_epoch", "classes", "mean",
         "std", "input_size", "dataset", "weights")  # fmt: skip


def slim_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What inference needs, weights in fp16 (loading casts them back to the model's dtype)."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return {"model": state, **{k: ckpt[k] for k in _KEEP if k in ckpt}, "zoo": True}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cnnbench", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RunDirError(f"`cnnbench {' '.join(args)}` failed: {done.stderr.strip()[-400:]}")
    return done


def measure_test_accuracy(
    entry: str | Path, data_dir: str | None = None, subset: int | None = None
) -> float:
    """Test accuracy of the entry's weights (float32 on the CPU, no TTA): all test images, or
    a seeded subset of ``subset`` (seed 0, the one the card records)."""
    from cnnbench.data import BatchIterator
    from cnnbench.train.loop import predict_logits

    model, ckpt = RunDir(entry).load_model()
    ds = checkpoint_dataset(ckpt, data_dir)
    x, y = ds.x_test, ds.y_test
    if subset is not None and subset < len(y):
        pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:subset]
        x, y = x[pick.sort().values], y[pick.sort().values]
    batches = BatchIterator(x, y, 500, shuffle=False, mean=tuple(ckpt["mean"]),
                            std=tuple(ckpt["std"]))  # fmt: skip
    logits, labels = predict_logits(model, batches, device=torch.device("cpu"))
    return float((logits.argmax(1) == labels).float().mean())


def _latency(entry: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cnnbench-zoo-") as tmp:
        out = Path(tmp) / "bench.json"
        _cli("bench", str(entry), "--backends", "onnxruntime,onnxruntime-int8", "--threads",
             "1", "--batch", "0", "--iters", "2000", "--max-seconds", "10", "--json", str(out))  # fmt: skip
        report = json.loads(out.read_text())
    write_json_atomic(RunDir(entry).bench_path, report)
    out: dict[str, Any] = {"device": report.get("device"), "threads": 1,
                           "load_average": round(os.getloadavg()[0], 2)}  # fmt: skip
    for r in report.get("results", []):
        if r.get("batch", 1) == 1 and r.get("threads") == 1:
            out[r["backend"]] = {k: r[k] for k in ("p50_ms", "p90_ms", "p99_ms", "iters") if k in r}
    out["reference"] = _reference_ratio(entry)
    return out


def _reference_ratio(entry: Path) -> dict[str, Any]:
    """The entry's fp32 p50 against MobileNetV2's, timed in turns (``reference_ratio``): the
    absolute figure above moves with the host; this ratio is what compares across sittings."""
    from cnnbench.bench.interleaved import reference_ratio

    model, ckpt = RunDir(entry).load_model()
    return reference_ratio(model.eval(), input_size=tuple(ckpt["input_size"]))


def _int8_accuracy(entry: Path, data_dir: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cnnbench-zoo-") as tmp:
        args = ["export", str(entry), "--int8", "--out", tmp, "--tolerance", "100"]
        _cli(*args, *(["--data-dir", data_dir] if data_dir else []))
        fp32 = json.loads((Path(tmp) / "model.json").read_text())
        int8 = json.loads((Path(tmp) / "model.int8.json").read_text())
    return {"onnx_fp32_acc": fp32["export_eval"]["onnx_acc"],
            "onnx_int8_acc": int8["export_eval"]["onnx_acc"],
            "torch_acc": fp32["export_eval"]["torch_acc"]}  # fmt: skip


def add_run(
    run: str | Path,
    name: str | None = None,
    *,
    zoo_root: Path | None = None,
    data_dir: str | None = None,
    force: bool = False,
    measure: bool = True,
) -> dict[str, Any]:
    """Add finished run ``run`` to the zoo as ``name`` (default ``<model>-<dataset>``)."""
    from cnnbench import zoo

    src = RunDir(run)
    summary = src.summary()
    if not src.is_complete() or summary is None:
        raise RunDirError(f"{src.path} is not a finished run (no complete summary.json)")
    name = name or f"{summary['model']}-{summary['dataset'].split(':')[0]}"
    if Path(name).name != name or name in (".", ".."):
        raise RunDirError(f"zoo entry name {name!r} must be a plain folder name")
    dest = RunDir((zoo_root or zoo.root()) / name)
    if dest.exists() and not force:
        raise RunDirError(f"zoo entry {dest.path} exists; pass --force to replace it")
    # A replaced entry starts empty: no card, latency or robustness file of the old weights
    # may stay beside the new ones.
    shutil.rmtree(dest.path, ignore_errors=True)
    dest.path.mkdir(parents=True)
    save_checkpoint(slim_checkpoint(src.load_checkpoint("best")), dest.checkpoint_path("best"))
    for path, target in ((src.config_path, dest.config_path),
                         (src.metrics_path, dest.metrics_path),
                         (src.summary_path, dest.summary_path)):  # fmt: skip
        shutil.copyfile(path, target)
    card = _card(name, summary, dest)
    card["shipped_test_acc"] = measure_test_accuracy(dest.path, data_dir)
    card["check_subset"] = {"images": CHECK_SUBSET, "seed": 0,
                            "test_acc": measure_test_accuracy(dest.path, data_dir, CHECK_SUBSET)}  # fmt: skip
    _write_card(dest, card)
    if measure:
        card = measure_entry(dest.path, data_dir)
    return card


def measure_entry(
    entry: str | Path,
    data_dir: str | None = None,
    what: tuple[str, ...] = DEFAULT_MEASURES,
    *,
    robustness_images: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Measure a zoo entry and update its card: ``latency`` (batch 1, ONNX Runtime fp32 and
    int8, one thread, fresh processes; then the fp32 ratio to MobileNetV2, timed in turns),
    ``ratio`` (that ratio alone), ``int8`` (the int8 model's test accuracy) and/or
    ``robustness`` (mean corruption accuracy, ``cnnbench.robustness``; ``robustness_images``
    test images, default the protocol's). Run it on a quiet machine."""
    unknown = [w for w in what if w not in MEASURES]
    if unknown or not what:
        raise RunDirError(f"cannot measure {unknown[0] if unknown else 'nothing'!r}; "
                          f"choose from {', '.join(MEASURES)}")  # fmt: skip
    dest = RunDir(entry)
    card = dest.zoo_card()
    if card is None:
        raise RunDirError(f"{dest.path} is not a zoo entry (no {dest.zoo_card_path.name})")
    dest.verify()
    if "latency" in what:
        card["latency"] = _latency(dest.path)
    elif "ratio" in what:
        card["latency"] = {**(card.get("latency") or {}), "reference": _reference_ratio(dest.path)}
    if "int8" in what:
        card["int8"] = _int8_accuracy(dest.path, data_dir)
    if "robustness" in what:
        card["robustness"] = _robustness(dest, data_dir, robustness_images, progress)
    _write_card(dest, card)
    return card


def _robustness(
    dest: RunDir, data_dir: str | None, images: int | None, progress: Any
) -> dict[str, Any]:
    """The card's summary of a robustness measurement, its full report written beside it."""
    from cnnbench.robustness.measure import measure_run
    from cnnbench.robustness.protocol import DEFAULT_IMAGES
    from cnnbench.robustness.results import card_summary

    report = measure_run(dest, images=images or DEFAULT_IMAGES, data_dir=data_dir,
                         out_dir=dest.path, progress=progress)  # fmt: skip
    return card_summary(report)


def _write_card(dest: RunDir, card: dict[str, Any]) -> None:
    write_json_atomic(dest.zoo_card_path, card)
    write_text_atomic(dest.path / "README.md", card_markdown(card))


def _card(name: str, summary: dict[str, Any], dest: RunDir) -> dict[str, Any]:
    keys = ("model", "model_args", "dataset", "recipe", "epochs", "batch_size", "seed",
            "train_images", "val_images", "test_images", "best_val_acc", "best_epoch",
            "test_acc", "test_acc_se", "test_acc_tta", "test_acc_tta_se", "tta", "tta_views",
            "weights", "params", "macs", "train_time_s", "fit_time_s", "budget_minutes",
            "images_per_s", "load_average", "device", "threads", "versions", "git_commit",
            "command", "distill")  # fmt: skip
    return {"name": name, **{k: summary.get(k) for k in keys},
            "sha256": sha256_of(dest.checkpoint_path("best")),
            "size_bytes": dest.checkpoint_path("best").stat().st_size,
            "seeds": [summary.get("seed")]}  # fmt: skip


def _pct(v: float | None, se: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.2%}" + (f" ± {se:.2%}" if se is not None else "")


def _robustness_text(r: dict[str, Any] | None) -> str:
    if not r or r.get("mca") is None:
        return "- (not measured: `cnnbench zoo measure NAME --measure robustness`)"
    drop = r.get("relative_drop")
    groups = ", ".join(f"{g} {_pct(v)}" for g, v in (r.get("groups") or {}).items())
    return (f"{_pct(r['mca'], r.get('mca_se'))} (CIFAR-C protocol, {r.get('images') or 0:,} test "
            f"images; clean {_pct(r.get('clean_acc'))} on them, relative drop "
            f"{_pct(drop)}; {groups})")  # fmt: skip


def _ratio_text(ref: dict[str, Any] | None) -> str:
    if not ref:
        return "- (not measured: `cnnbench zoo measure NAME`)"
    return (f"{ref['ratio']:.2f}x: fp32 p50 {ref['p50_ms']:.3f} ms against {ref['reference']}'s "
            f"{ref['reference_p50_ms']:.3f} ms, timed in turns in one process "
            f"({ref['rounds']} rounds, {ref['iters']} calls each)")  # fmt: skip


def _distill_text(d: dict[str, Any]) -> str:
    return (f"`{d['teacher']}` ({d.get('teacher_model')}, best.pt sha256 "
            f"`{str(d.get('teacher_sha256'))[:12]}`), alpha {d['alpha']:g}, temperature "
            f"{d['temperature']:g}; its flip-averaged logits on the {d['images']:,} training "
            f"images took {d['seconds']:.0f} s inside the budget; the teacher's own training "
            "is not counted in the training time")  # fmt: skip


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    lat = card.get("latency") or {}
    int8 = card.get("int8") or {}

    def ms(backend: str) -> str:
        r = lat.get(backend) or {}
        return f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f} ms" if "p50_ms" in r else "-"

    rows = [
        ("dataset", f"{card['dataset']} ({card['train_images']:,} train / "
                    f"{card['val_images']:,} validation / {card['test_images']:,} test images)"),
        ("recipe", f"`{card.get('recipe')}`, {card['epochs']} epochs, batch {card['batch_size']}, "
                   f"seed {card['seed']}"),
        ("command", f"`{card['command']}`"),
        ("training time", f"{(card.get('fit_time_s') or card['train_time_s']) / 60:.1f} min on "
                          f"{card['device']}, {card['threads']} threads (load {card.get('load_average')})"),
        *([("distilled from", _distill_text(card["distill"]))] if card.get("distill") else []),
        ("commit", f"`{card.get('git_commit')}`"),
        ("test accuracy", f"{_pct(card['test_acc'], card.get('test_acc_se'))} (validation-selected "
                          f"{card.get('weights')} weights, best epoch {card['best_epoch']}; "
                          f"test set touched once)"),
        ("with TTA", f"{_pct(card.get('test_acc_tta'), card.get('test_acc_tta_se'))} "
                     f"({card.get('tta')}, {card.get('tta_views')} forward passes)"),
        ("shipped fp16 weights", _pct(card.get("shipped_test_acc"))),
        ("parameters / MACs", f"{card['params']:,} / {card['macs'] / 1e6:.1f} M"),
        ("batch-1 latency p50 / p99, 1 thread", f"ONNX Runtime fp32 {ms('onnxruntime')}, "
                                                f"int8 {ms('onnxruntime-int8')}"),
        ("latency against MobileNetV2", _ratio_text(lat.get("reference"))),
        ("int8 accuracy", f"{_pct(int8.get('onnx_int8_acc'))} (fp32 ONNX "
                          f"{_pct(int8.get('onnx_fp32_acc'))})"),
        ("mean corruption accuracy", _robustness_text(card.get("robustness"))),
        ("sha256 of best.pt", f"`{card['sha256']}`"),
    ]  # fmt: skip
    lines = [f"# {card['name']}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    # create_model(NAME, pretrained=DATASET) loads the entry NAME-DATASET: the entry's own
    # prefix, which is not the builder's name for an entry like fastnet_24_96 (fastnet + widths)
    prefix = card["name"].removesuffix(f"-{card['dataset']}")
    lines += ["", f"Use it: `cnnbench predict {card['name']} IMAGE`, `cnnbench serve "
              f"{card['name']}`, or `create_model(\"{prefix}\", "
              f"pretrained=\"{card['dataset']}\")`.", ""]  # fmt: skip
    return "\n".join(lines)
