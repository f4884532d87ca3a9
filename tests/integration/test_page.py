"""Issue 20.3: a report to look at (one self-contained HTML page, opened in a real headless
browser), `show` on comparisons and on a folder of runs, --json and --version."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from evoprune.cli import main
from evoprune.cli.page import write_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def front_run(tmp_path_factory, faces_folder, feature_cache):
    """A two-objective run made by `evoprune run --json` (its printed document returned)."""
    out = tmp_path_factory.mktemp("page") / "run"
    argv = ["run", "--data", str(faces_folder), "--encoding", "fs", "--population", "6"]
    argv += ["--evaluations", "12", "--seed", "1", "--objectives", "accuracy,size"]
    argv += ["--out", str(out), "--cache-dir", str(feature_cache), "-q", "--json"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return out, json.loads(buf.getvalue())


def test_run_json_is_the_result(front_run):
    out, doc = front_run
    saved = json.loads((out / "result.json").read_text())
    assert doc["run_dir"] == str(out)
    assert {k: v for k, v in doc.items() if k != "run_dir"} == json.loads(
        json.dumps(saved).replace("NaN", "null")
    )


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_run_page_is_self_contained_and_shows_the_run(front_run):
    out, result = front_run
    path = write_page(out)
    assert path == out / "report.html"
    page = path.read_text(encoding="utf-8")
    # every figure of the folder, embedded byte for byte; nothing loaded from elsewhere
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 4  # convergence, confusion, pareto, hypervolume
    assert sorted(_images(page)) == sorted(p.read_bytes() for p in pngs)
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith("data:") for r in refs)
    assert "<script" not in page
    # the numbers of result.json: both heads, the front with its shipped head, classes, timings
    assert f"{result['test_accuracy']:.4f}" in page
    assert f"{result['reference_test_accuracy']:.4f}" in page
    rows = re.findall(r'<tr class="shipped">(.*?)</tr>', page)
    (chosen,) = [m for m in result["front"] if m["selected"]]
    assert len(rows) == 1 and f"{chosen['test_accuracy']:.4f}" in rows[0]
    assert page.count("<tr>") >= len(result["front"]) + len(result["per_class"])
    for c in result["per_class"]:
        assert f"<td>{c['class']}</td>" in page
    assert f"{result['wall_seconds']:.1f}" in page and "final training" in page
    assert "history.csv" in page and "front/head_0.safetensors" in page  # the files


def _fake_comparison(tmp_path, run_dir):
    """A comparison folder around copies of one run: the files `compare` writes."""
    root = tmp_path / "cmp"
    (root / "runs").mkdir(parents=True)
    for k in range(2):
        shutil.copytree(run_dir, root / "runs" / f"fs_run{k}")
    (root / "comparison.json").write_text(
        json.dumps({"comparison": {"data": "faces", "runs": 2, "variants": ["fs"]}})
    )
    (root / "table.md").write_text(
        "# faces\n\n| method | test acc |\n|---|---:|\n| EvoPruneDeepTL | 0.8100 |\n"
        "| Not pruned | 0.8000 |\n\n- 2 runs: no test has power\n"
    )
    (root / "summary.csv").write_text("encoding,method,run\nfs,evoprune,0\nfs,evoprune,1\n")
    shutil.copy(run_dir / "convergence.png", root / "accuracy_vs_active.png")
    return root


def test_comparison_page_and_show(front_run, tmp_path, capsys):
    out, result = front_run
    root = _fake_comparison(tmp_path, out)
    page = write_page(root).read_text(encoding="utf-8")
    assert "<td>EvoPruneDeepTL</td>" in page and "0.8100" in page  # table.md as a table
    assert "fs_run0" in page and "fs_run1" in page and "no test has power" in page
    assert len(_images(page)) == 1
    capsys.readouterr()
    assert main(["show", str(root)]) == 0
    text = capsys.readouterr().out
    assert "| EvoPruneDeepTL | 0.8100 |" in text and "fs_run1" in text
    assert "interrupted" not in text
    assert main(["show", str(root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in doc["runs"]] == ["fs_run0", "fs_run1"]
    assert doc["runs"][0]["test_accuracy"] == result["test_accuracy"]
    assert doc["summary"][1] == {"encoding": "fs", "method": "evoprune", "run": "1"}


def test_show_a_folder_of_runs_finished_or_not(front_run, tmp_path, capsys):
    out, result = front_run
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(out, runs / "a_done")
    (runs / "b_stopped").mkdir()
    shutil.copy(out / "config.json", runs / "b_stopped")
    lines = (out / "history.csv").read_text().splitlines()[:6]  # header + 5 evaluations
    (runs / "b_stopped" / "history.csv").write_text("\n".join(lines) + "\n")
    (runs / "notes").mkdir()  # not a run: left out
    capsys.readouterr()
    assert main(["show", str(runs)]) == 0
    text = capsys.readouterr().out
    assert "a_done" in text and "finished" in text and f"{result['test_accuracy']:.4f}" in text
    assert "b_stopped" in text and "unfinished" in text and "notes" not in text
    assert main(["show", str(runs), "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["run"], r["status"], r["evaluations"]) for r in doc["runs"]] == [
        ("a_done", "finished", 12),
        ("b_stopped", "unfinished", 5),
    ]


def test_show_lists_every_file_and_prints_json(front_run, capsys):
    out, result = front_run
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("config.json", "history.csv", "pareto.csv", "pareto.png", "front/head_0"):
        assert name in text
    assert main(["show", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["result"]["test_accuracy"] == result["test_accuracy"]
    assert {"history.csv", "result.json", "head.safetensors"} <= {f["file"] for f in doc["files"]}


def test_predict_json(front_run, faces_folder, capsys):
    out, result = front_run
    images = [faces_folder / "face" / "000.png", faces_folder / "not_face" / "150.png"]
    capsys.readouterr()
    assert main(["predict", str(out), *map(str, images), "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in doc["predictions"]] == [str(p) for p in images]
    for p in doc["predictions"]:
        assert set(p["probabilities"]) == set(result["classes"])
        assert p["probability"] == max(p["probabilities"].values())
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_version(capsys):
    from evoprune import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"evoprune {__version__}"


def test_report_refuses_a_folder_that_is_neither(tmp_path, caplog):
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a run folder (result.json) nor a comparison folder" in caplog.text
    assert not (tmp_path / "report.html").exists()


# --- a real browser --------------------------------------------------------------------------


def browse(page, shot, tmp_path) -> list[str]:
    """Open ``page`` in headless Chromium, save a screenshot to ``shot``; the console messages
    the page produced (Chromium logs each as ``CONSOLE``)."""
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            "--enable-logging=stderr",
            "--v=0",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs it)")
def test_the_page_opens_in_a_browser_without_console_errors(front_run, tmp_path):
    from PIL import Image

    out, _ = front_run
    page = write_page(out, tmp_path / "page.html")
    shot = tmp_path / "page.png"
    assert browse(page, shot, tmp_path) == []
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (2400, 1200)
    assert img.std() > 20  # text, tables and figures drawn, not a blank page
    # the check can fail: a page that writes to the console is caught
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body>x<script>console.error("broken page")</script></body></html>')
    assert any("broken page" in line for line in browse(bad, tmp_path / "bad.png", tmp_path))
