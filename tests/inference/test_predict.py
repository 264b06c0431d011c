"""Image decoding with per-file errors (and HTTP statuses), the Predictor on both backends,
`cnnbench predict`."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnbench.cli import main
from cnnbench.export import export_run
from cnnbench.inference import ImageError, Predictor, decode_upload, load_image


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge image, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    d = tmp_path / "imgs"
    d.mkdir()
    files = {
        "rgb_png": (Image.fromarray(rgb), "a.png"),
        "gray": (Image.fromarray(rgb[..., 0], "L"), "b.png"),
        "rgba": (Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"), "c.png"),
        "palette": (Image.fromarray(rgb).convert("P"), "d.png"),
        "big_jpeg": (Image.fromarray(rgb).resize((1200, 800)), "e.jpg"),
        "tiny": (Image.fromarray(rgb[:3, :2]), "f.bmp"),
        "cmyk": (Image.fromarray(rgb).convert("CMYK"), "g.tif"),
    }
    out = {}
    for key, (im, name) in files.items():
        im.save(d / name)
        out[key] = d / name
    sixteen = (rng.integers(0, 65536, (40, 30))).astype(np.uint16)
    Image.fromarray(sixteen).save(d / "h16.png")
    out["gray16"] = d / "h16.png"
    return out


@pytest.mark.parametrize("size", [32, 17])
def test_every_mode_and_size_becomes_rgb_uint8(images, size):
    for key, path in images.items():
        x = load_image(path, size)
        assert x.shape == (3, size, size) and x.dtype == np.uint8, key
    # bytes in, same result as the file
    assert np.array_equal(
        load_image(images["rgba"].read_bytes(), 32), load_image(images["rgba"], 32)
    )


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "w.png")
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "g.png")
    assert (load_image(tmp_path / "w.png", 8) == 255).all()
    assert (abs(load_image(tmp_path / "g.png", 8).astype(int) - 128) <= 1).all()


def test_transparency_is_flattened_onto_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert (load_image(tmp_path / "t.png", 4) == 255).all()


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = _png_bytes(
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    )
    files = {
        "text": (b"hello, I am not an image\n", "not an image"),
        "empty": (b"", "empty file"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "bomb": (_png_header_only(100_000, 100_000), "decompression bomb"),
        "over_limit": (_png_header_only(10_000, 6_000), "over the 50 MP limit"),
    }
    out = {}
    for name, (data, why) in files.items():
        p = tmp_path / f"{name}.png"
        p.write_bytes(data)
        out[name] = (p, why)
    out["missing"] = (tmp_path / "missing.png", "no such file")
    return out


def test_bad_files_raise_a_clear_image_error(tmp_path):
    for name, (path, why) in _bad_files(tmp_path).items():
        with pytest.raises(ImageError, match=why):
            load_image(path, 32)
        assert name


def test_byte_limit(tmp_path):
    with pytest.raises(ImageError, match="MiB limit"):
        load_image(b"x" * 2048, 32, max_bytes=1024)


def test_image_errors_carry_their_http_status(tmp_path):
    want = {
        "text": (415, "not_an_image"),
        "empty": (415, "not_an_image"),
        "truncated": (422, "corrupt_image"),
        "bomb": (413, "image_too_large"),
        "over_limit": (413, "image_too_large"),
        "missing": (422, "unreadable_file"),
    }
    for name, (path, _) in _bad_files(tmp_path).items():
        with pytest.raises(ImageError) as e:
            load_image(path, 32)
        assert (e.value.status, e.value.error) == want[name], name
        assert e.value.detail == str(e.value)
    with pytest.raises(ImageError) as e:
        load_image(b"x" * 2048, 32, max_bytes=1024)
    assert e.value.status == 413


def test_an_upload_is_checked_by_its_header_then_decoded(images):
    data = images["rgb_png"].read_bytes()
    assert np.array_equal(decode_upload(data, (32, 32)), load_image(data, 32))
    with pytest.raises(ImageError) as e:  # a format the service does not take
        decode_upload(images["cmyk"].read_bytes(), (32, 32))
    assert e.value.status == 415 and "TIFF" in e.value.detail
    with pytest.raises(ImageError) as e:  # the header passes, the pixel data does not
        decode_upload(data[: len(data) // 2], (32, 32))
    assert (e.value.status, e.value.error) == (422, "corrupt_image")
    assert e.value.detail.startswith("cannot decode the PNG image: ")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export_run(trained_run, out_dir=out, test_subset=200, log=lambda m: None)
    return out / "model.onnx"


def test_predictor_backends_agree_and_are_thread_safe(exported, trained_run, images):
    ort_p = Predictor.load(exported)
    torch_p = Predictor.load(trained_run)
    assert (ort_p.backend, torch_p.backend) == ("onnxruntime", "torch")
    assert ort_p.classes == torch_p.classes and ort_p.image_size == (32, 32)
    batch = np.stack([load_image(p, 32) for p in images.values()])
    a, b = ort_p.predict(batch), torch_p.predict(batch)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
    top = ort_p.top_k(a, 3)
    assert len(top) == len(batch) and all(len(t) == 3 for t in top)
    assert all(t[0][1] >= t[1][1] >= t[2][1] for t in top)

    for predictor, want in ((ort_p, a), (torch_p, b)):
        results: dict[int, np.ndarray] = {}

        def work(i: int, predictor=predictor, results=results) -> None:
            for _ in range(5):
                results[i] = predictor.predict(batch[i : i + 1])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batch))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = np.concatenate([results[i] for i in range(len(batch))])
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_cli_predict_reports_per_file_errors_and_exit_code(exported, images, tmp_path, capsys):
    bad = _bad_files(tmp_path)
    argv = ["predict", str(exported), *map(str, images.values())]
    argv += [*(str(p) for p, _ in bad.values()), "--top-k", "3"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    for path, why in bad.values():
        assert f"{path}: error: " in out and why in out.split(f"{path}: error: ")[1].split("\n")[0]
    for path in images.values():
        assert f"{path}: " in out and f"{path}: error" not in out
    assert f"{len(images)} of {len(images) + len(bad)} file(s) classified" in out
    assert "  3. " in out

    # All good, from a folder (non-image names in it are skipped), torch backend: exit 0.
    (images["rgb_png"].parent / "notes.txt").write_text("not an image")
    assert main(["predict", str(exported), str(images["rgb_png"].parent), "--json"]) == 0
    assert '"label"' in capsys.readouterr().out


def test_cli_predict_torch_backend_from_run(trained_run, images, capsys):
    assert main(["predict", str(trained_run), str(images["gray"]), "--backend", "torch"]) == 0
    assert "with torch" in capsys.readouterr().out


def test_cli_predict_takes_a_zoo_name(trained_run, images, monkeypatch, capsys):
    from cnnbench import zoo

    monkeypatch.setattr(zoo, "find", lambda name: trained_run if name == "tiny-zoo" else None)
    assert main(["predict", "tiny-zoo", str(images["rgb_png"]), "--backend", "torch"]) == 0
    assert f"with torch ({trained_run})" in capsys.readouterr().out
    assert main(["predict", "no-such-zoo-model", str(images["rgb_png"])]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_cli_predict_missing_sidecar_is_a_user_error(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"junk")
    assert main(["predict", str(tmp_path / "m.onnx"), "x.png"]) == 2
    assert "m.json is missing" in capsys.readouterr().err
