"""`cnnbench serve` refuses bad arguments with one line and exit code 2 (the server itself
is started by the browser test)."""

from __future__ import annotations

import pytest

from cnnbench.cli import build_parser, main


def test_serve_is_registered():
    args = build_parser().parse_args(["serve", "runs/x"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.backend == "onnxruntime"
    assert args.max_upload_mb == 10.0 and args.micro_batch == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "{tmp}/missing"], "is not a run directory"),
        (["serve", "{tmp}"], "no checkpoint"),
        (["serve", "{tmp}", "--port", "0"], "--port"),
        (["serve", "{tmp}", "--max-upload-mb", "0"], "--max-upload-mb"),
        (["serve", "{tmp}", "--workers-threads", "0"], "--workers-threads"),
    ],
)
def test_user_errors(argv, message, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_unknown_backend_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(tmp_path), "--backend", "tensorrt"])
    assert e.value.code == 2
