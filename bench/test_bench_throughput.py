"""End-to-end file throughput (bench/throughput.py): run_files against a plain OpenCV loop.

With ``--smoke``: 6 tiny images, one run per method, no timing claims. Without it: the full
1000-image 1080p measurement (minutes on a few cores). Nothing here asserts a time; what is
asserted is that every method processed every file and that gpuenhance and the plain OpenCV
loop computed the same images (see ``throughput.check_equal``).
"""

from __future__ import annotations

import numpy as np

from bench import throughput


def test_throughput(request, tmp_path):
    smoke = request.config.getoption("--smoke")
    data = (tmp_path / "inputs") if smoke else None  # full run: the cached folder
    doc = throughput.run(smoke=smoke, data_dir=data, log=lambda *a: None)
    n = doc["settings"]["n"]
    assert doc["settings"]["jpeg"] + doc["settings"]["png"] == n
    for row in doc["rows"]:
        if row["device"] == "gpu" and row["status"] == "skipped":
            continue  # no GPU here: the row carries the reason
        assert row["status"] == "ok", f"{row['label']}: {row['note']}"
        assert (row["images"], row["failed"]) == (n, 0), row["label"]
    check = doc["check"]
    assert check["verdict"] == "PASS", check["details"]
    md = throughput.markdown(doc)
    assert "| gpuenhance[cpu] run_files, batch 8 |" in md and "PASS" in md


def test_inputs_are_deterministic_and_cached(tmp_path):
    a = throughput.synth_image(7, 3, 40, 24)
    b = throughput.synth_image(7, 3, 40, 24)
    c = throughput.synth_image(7, 4, 40, 24)
    assert a.shape == (24, 40, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    first = throughput.ensure_inputs(tmp_path, 4, (40, 24), seed=7, log=lambda *a: None)
    again = throughput.ensure_inputs(tmp_path, 4, (40, 24), seed=7, log=lambda *a: None)
    assert (first["generated"], again["generated"]) == (4, 0)
    names = [p.relative_to(tmp_path).as_posix() for p in throughput.list_inputs(tmp_path)]
    assert names == ["d00/img0000.jpg", "d00/img0001.png", "d00/img0002.jpg", "d00/img0003.png"]


def test_plain_gamma_table_matches_closed_form():
    # the users' table: round(255 * (i / 255) ** 0.8), checked on a few levels by hand
    lut = throughput.gamma_lut(0.8)
    for i in (0, 1, 64, 128, 200, 255):
        assert lut[i] == int(np.floor(255 * (i / 255) ** 0.8 + 0.5))
