"""`cnnbench serve` refuses bad arguments with one line and exit code 2 (the server itself
is started by the browser test)."""

from __future__ import annotations

import pytest

from cnnbench.cli import build_parser, main


def test_serve_is_registered():
    args = build_parser().parse_args(["serve", "runs/x"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.backend == "onnxruntime"
    assert args.max_upload_mb == 10.0 and args.micro_batch == 1
    assert args.max_pixels == 2048 * 2048 and args.large_decodes == 2
    assert args.body_timeout == 30.0 and args.workers_threads is None
    args = build_parser().parse_args(["serve", "x", "--max-pixels", "1000", "--body-timeout", "5"])
    assert args.max_pixels == 1000 and args.body_timeout == 5.0


def test_help_justifies_the_pixel_limit(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--max-pixels" in out and "2048 x 2048" in out and "--body-timeout" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "{tmp}/missing"], "is not a run directory"),
        (["serve", "{tmp}"], "no checkpoint"),
        (["serve", "{tmp}", "--port", "0"], "--port"),
        (["serve", "{tmp}", "--max-upload-mb", "0"], "--max-upload-mb"),
        (["serve", "{tmp}", "--workers-threads", "0"], "--workers-threads"),
        (["serve", "{tmp}", "--max-pixels", "0"], "--max-pixels"),
        (["serve", "{tmp}", "--large-decodes", "0"], "--large-decodes"),
        (["serve", "{tmp}", "--body-timeout", "0"], "--body-timeout"),
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
