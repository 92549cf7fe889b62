"""Smoke test of the loader benchmark (tiny tree): both pipelines measured side by side, table and JSON written."""

import json

from PIL import Image

from benchmarks import loader


def test_loader_benchmark_runs_side_by_side(tmp_path, capsys):
    out = tmp_path / "loader.json"
    rows = loader.main(["--images", "8", "--classes", "2", "--image-size", "60", "50", "--resolution", "16",
                        "--batch", "4", "--repeats", "1", "--warmup", "0", "--encodings", "raw", "png",
                        "--prepare-workers", "1", "--root", str(tmp_path / "tree"), "--json", str(out)])  # fmt: skip
    assert [(r["pipeline"], r["encoding"]) for r in rows] == [("raw", "jpeg-src"), ("prepared", "raw"),
                                                              ("prepared", "png")]  # fmt: skip
    assert all(r["images"] == 4 and r["images_per_second"] > 0 for r in rows)  # 2nd of 2 batches of 4 (1 pass)
    assert all(r["first_batch_seconds"] > 0 for r in rows)
    assert rows[0]["vs_raw"] == 1.0 and rows[1]["vs_raw"] == rows[1]["images_per_second"] / rows[0]["images_per_second"]
    assert {(r["batch_size"], r["workers"], r["resolution"]) for r in rows} == {(4, 0, 16)}
    assert rows[1]["bytes_per_image"] > 16 * 16 * 3  # raw uint8 arrays (plus LitData's per-item header)
    assert "target >= 5x" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"][2]["encoding"] == "png"
    files = sorted((tmp_path / "tree" / "imagenet" / "train").rglob("*.JPEG"))
    assert len(files) == 8
    with Image.open(files[0]) as img:  # real JPEG files of the asked size (+-20%)
        assert img.format == "JPEG" and 48 <= img.size[0] <= 72 and 40 <= img.size[1] <= 60
