"""The protocol benchmark measures both resize filters and both SSIM conventions on real photographs."""

import json

from benchmarks.inpaint_protocol import main


def test_protocol_benchmark(tmp_path, capsys):
    out = tmp_path / "protocol.json"
    rows = main(["--methods", "telea", "--photos", "chelsea", "--json", str(out)])
    assert {(r["resize"], r["ssim_convention"]) for r in rows} == {
        ("bilinear", "skimage"), ("bilinear", "matlab"), ("lanczos", "skimage"), ("lanczos", "matlab"),
    }  # fmt: skip
    by = {(r["resize"], r["ssim_convention"]): r for r in rows}
    assert by[("bilinear", "skimage")]["psnr"] == by[("bilinear", "matlab")]["psnr"]  # SSIM only
    assert by[("bilinear", "skimage")]["psnr"] != by[("lanczos", "skimage")]["psnr"]
    assert by[("bilinear", "matlab")]["ssim"] > by[("bilinear", "skimage")]["ssim"]
    assert json.loads(out.read_text()) == rows
    assert "telea: lanczos - bilinear" in capsys.readouterr().out
