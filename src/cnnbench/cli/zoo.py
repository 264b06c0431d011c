"""`cnnbench zoo`: the trained models shipped with cnnbench, their cards, and adding one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _fmt_ms(lat: dict, backend: str) -> str:
    r = (lat or {}).get(backend) or {}
    return f"{r['p50_ms']:.3f}/{r['p99_ms']:.3f}" if "p50_ms" in r else "-"


def _cmd_list(args: argparse.Namespace) -> int:
    from cnnbench import zoo

    cards = zoo.cards()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print("no models shipped yet (cnnbench zoo add RUN adds one)")
        return 0
    head = (f"{'name':<28}{'test %':>15}{'TTA %':>8}{'params':>11}{'MACs':>8}"
            f"{'fp32 p50/p99 ms':>17}{'/mnv2':>7}{'int8 p50/p99 ms':>17}{'int8 %':>8}"
            f"{'mCA %':>8}"
            f"{'train':>8}")  # fmt: skip
    print(head)
    for c in cards:
        acc = f"{c['test_acc']:.2%}±{(c.get('test_acc_se') or 0):.2%}"
        tta = f"{c['test_acc_tta']:.2%}" if c.get("test_acc_tta") is not None else "-"
        int8 = (c.get("int8") or {}).get("onnx_int8_acc")
        mca = (c.get("robustness") or {}).get("mca")
        minutes = (c.get("fit_time_s") or c["train_time_s"]) / 60
        ref = (c.get("latency") or {}).get("reference")
        ratio = f"{ref['ratio']:.2f}x" if ref else "-"
        print(f"{c['name']:<28}{acc:>15}{tta:>8}{c['params']:>11,}{c['macs'] / 1e6:>7.1f}M"
              f"{_fmt_ms(c.get('latency'), 'onnxruntime'):>17}{ratio:>7}"
              f"{_fmt_ms(c.get('latency'), 'onnxruntime-int8'):>17}"
              f"{(f'{int8:.2%}' if int8 is not None else '-'):>8}"
              f"{(f'{mca:.2%}' if mca is not None else '-'):>8}{minutes:>6.1f}m")  # fmt: skip
    print(
        "\naccuracy: CIFAR test split, validation-selected weights, ± standard error; "
        "latency: batch 1, ONNX Runtime, one thread; /mnv2: fp32 p50 as a fraction of the "
        "CIFAR-stride MobileNetV2's, timed in turns (steadier than ms on a busy host); mCA: "
        "mean corruption accuracy, CIFAR-C protocol (cnnbench robustness); see each card: cnnbench zoo show NAME"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from cnnbench import zoo
    from cnnbench.cli import UserError

    path = zoo.find(args.name)
    if path is None:
        raise UserError(f"no zoo model {args.name!r}; shipped: {', '.join(zoo.names()) or 'none'}")
    print((path / "README.md").read_text())
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    from cnnbench.zoo.build import add_run

    card = add_run(args.run, args.name, zoo_root=args.zoo_dir, data_dir=args.data_dir,
                   force=args.force, measure=not args.no_measure)  # fmt: skip
    print(f"added {card['name']}: test {card['shipped_test_acc']:.2%} with the shipped weights")
    return 0


def _measures(text: str) -> tuple[str, ...]:
    from cnnbench.zoo.build import MEASURES

    what = tuple(w.strip() for w in text.split(",") if w.strip())
    bad = [w for w in what if w not in MEASURES]
    if bad or not what:
        raise argparse.ArgumentTypeError(
            f"choose a comma list of {', '.join(MEASURES)}, got {text!r}"
        )
    return what


def _measure_line(name: str, card: dict, what: tuple[str, ...]) -> str:
    parts = []
    lat = card.get("latency") or {}
    if "latency" in what:
        parts.append(f"ORT fp32 p50 {lat['onnxruntime']['p50_ms']:.3f} ms, int8 p50 "
                     f"{lat['onnxruntime-int8']['p50_ms']:.3f} ms (load {lat['load_average']})")  # fmt: skip
    if {"latency", "ratio"} & set(what) and lat.get("reference"):
        parts.append(f"{lat['reference']['ratio']:.2f}x MobileNetV2 in turns")
    if "int8" in what:
        parts.append(f"int8 accuracy {card['int8']['onnx_int8_acc']:.2%}")
    if "robustness" in what:
        r = card["robustness"]
        parts.append(f"mean corruption accuracy {r['mca']:.2%} on {r['images']:,} images "
                     f"(clean {r['clean_acc']:.2%}, relative drop {r['relative_drop']:.1%})")  # fmt: skip
    return f"{name}: " + ", ".join(parts)


def _cmd_measure(args: argparse.Namespace) -> int:
    import sys

    from cnnbench import zoo
    from cnnbench.cli import UserError
    from cnnbench.zoo.build import measure_entry

    names = args.names or zoo.names()
    paths = []
    for name in names:
        path = zoo.find(name)
        if path is None:
            raise UserError(f"no zoo model {name!r}; shipped: {', '.join(zoo.names()) or 'none'}")
        paths.append((name, path))
    for name, path in paths:
        card = measure_entry(path, args.data_dir, args.measure,
                             robustness_images=args.robustness_images,
                             progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))  # fmt: skip
        print(_measure_line(name, card, args.measure))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `zoo` sub-command (list, show, add, measure)."""
    p = sub.add_parser(
        "zoo", help="trained models shipped with cnnbench",
        description="List the shipped trained models with their measured accuracy and "
        "latency. Every command that takes a run directory (predict, serve, bench, export, "
        "evaluate) also takes a zoo name; in Python: create_model(NAME, pretrained=DATASET).",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(func=_cmd_list)
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    s = zsub.add_parser("show", help="print one model's card")
    s.add_argument("name", help="zoo name, e.g. fastnet_small-cifar10")
    s.set_defaults(func=_cmd_show)
    a = zsub.add_parser(
        "add", help="add a finished run to the zoo (measures it: minutes)",
        description="Copy a finished run's validation-selected weights (fp16) and records into "
        "the zoo, re-measure the shipped weights' test accuracy, batch-1 latency (ONNX Runtime "
        "fp32 and int8, one thread) and int8 accuracy, and write its card.",
    )  # fmt: skip
    a.add_argument("run", type=Path, help="finished run directory")
    a.add_argument("--name", default=None, help="zoo name (default: MODEL-DATASET)")
    a.add_argument("--zoo-dir", type=Path, default=None, help="zoo folder (default: the package's)")
    a.add_argument("--data-dir", default=None, help="where the dataset is (default: as trained)")
    a.add_argument("--force", action="store_true", help="replace an existing entry")
    a.add_argument("--no-measure", action="store_true", help="skip latency and int8 (fast)")
    a.set_defaults(func=_cmd_add)
    m = zsub.add_parser(
        "measure", help="re-measure latency and int8 accuracy of zoo models (minutes)",
        description="Batch-1 latency (ONNX Runtime fp32 and int8, one thread, each in a fresh "
        "process; then fp32 timed in turns with the CIFAR-stride MobileNetV2, whose ratio holds "
        "when the host's speed drifts) and int8 test accuracy of shipped models, and on request their mean "
        "corruption accuracy (cnnbench robustness); updates their cards. Run it on a quiet "
        "machine: the card records the load average.",
    )  # fmt: skip
    m.add_argument("names", nargs="*", help="zoo names (default: all)")
    m.add_argument("--data-dir", default=None, help="where the dataset is (default: as trained)")
    m.add_argument("--measure", type=_measures, default=("latency", "int8"), metavar="LIST",
                   help="comma list of latency, ratio, int8, robustness (default: "
                   "latency,int8); ratio: only the fp32 ratio to MobileNetV2 (seconds); robustness adds the mean corruption accuracy to the card")  # fmt: skip
    m.add_argument("--robustness-images", type=int, default=None, metavar="N",
                   help="test images of the robustness measurement (default: the protocol's)")  # fmt: skip
    m.set_defaults(func=_cmd_measure)
