"""The real `dvc` reads what Capstan writes, and Capstan reads what `dvc` writes."""
import os
import subprocess
import sys
from pathlib import Path

DVC = str(Path(sys.executable).with_name("dvc"))


def run(*args, cwd):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out.stdout


def capstan(*args, cwd):
    return run(os.environ["CAPSTAN_BIN"], "data", *args, cwd=cwd)


def make_data(root: Path):
    (root / "ds" / "x").mkdir(parents=True)
    (root / "ds" / "1.txt").write_text("one")
    (root / "ds" / "x" / "2.txt").write_text("two")
    (root / "ds" / "é.txt").write_text("accent")
    (root / "table.csv").write_text("a,b\n1,2\n")


def test_dvc_reads_capstan(tmp_path):
    make_data(tmp_path)
    capstan("init", cwd=tmp_path)
    capstan("add", "ds", "table.csv", cwd=tmp_path)
    assert "Data and pipelines are up to date" in run(DVC, "status", cwd=tmp_path)
    for p in ["ds/1.txt", "ds/x/2.txt", "ds/é.txt", "table.csv"]:
        (tmp_path / p).unlink()
    run(DVC, "checkout", cwd=tmp_path)
    assert (tmp_path / "ds" / "é.txt").read_text() == "accent"
    assert (tmp_path / "table.csv").read_text() == "a,b\n1,2\n"


def test_capstan_reads_dvc(tmp_path):
    make_data(tmp_path)
    run(DVC, "init", "--no-scm", "-q", cwd=tmp_path)
    run(DVC, "add", "-q", "ds", "table.csv", cwd=tmp_path)
    assert "up to date" in capstan("status", cwd=tmp_path)
    (tmp_path / "ds" / "x" / "2.txt").write_text("changed")
    assert "modified:      ds" in capstan("status", cwd=tmp_path)
    capstan("checkout", cwd=tmp_path)
    assert (tmp_path / "ds" / "x" / "2.txt").read_text() == "two"
    # A version Capstan adds on top of DVC's cache is one dvc accepts.
    (tmp_path / "table.csv").write_text("a,b\n3,4\n")
    capstan("add", "table.csv", cwd=tmp_path)
    assert "Data and pipelines are up to date" in run(DVC, "status", cwd=tmp_path)


PIPELINE = """stages:
  prepare:
    cmd: mkdir -p out && awk -F, 'NR>1{print $1*2}' raw.csv > out/doubled.txt
    deps:
    - raw.csv
    params:
    - prepare.scale
    outs:
    - out
  summarize:
    cmd: wc -l out/doubled.txt > summary.txt
    deps:
    - out
    outs:
    - summary.txt
"""


def pipeline_project(root: Path):
    (root / "dvc.yaml").write_text(PIPELINE)
    (root / "params.yaml").write_text("prepare:\n  scale: 2\n")
    (root / "raw.csv").write_text("a,b\n1,2\n3,4\n")


def test_dvc_accepts_capstans_lock_and_the_reverse(tmp_path):
    pipeline_project(tmp_path)
    capstan("init", cwd=tmp_path)
    out = capstan("repro", cwd=tmp_path)
    assert "prepare: ran" in out and "summarize: ran" in out
    assert "Data and pipelines are up to date" in run(DVC, "status", cwd=tmp_path)

    other = tmp_path / "other"
    other.mkdir()
    pipeline_project(other)
    run(DVC, "init", "--no-scm", "-q", cwd=other)
    run(DVC, "repro", "-q", cwd=other)
    out = capstan("repro", cwd=other)
    assert "prepare: unchanged" in out and "summarize: unchanged" in out


def test_templated_pipelines_match_dvc(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.5\n")
    (tmp_path / "dvc.yaml").write_text(
        "vars:\n  - name: capstan\n"
        "stages:\n"
        "  greet:\n    cmd: echo \"${name} lr=${train.lr}\" > greet.txt\n    outs:\n    - greet.txt\n"
        "  split:\n    foreach: [a, b]\n    do:\n      cmd: echo ${item} > part-${item}.txt\n      outs:\n      - part-${item}.txt\n"
    )
    capstan("init", cwd=tmp_path)
    out = capstan("repro", cwd=tmp_path)
    assert "split@a: ran" in out and "split@b: ran" in out
    assert (tmp_path / "greet.txt").read_text().strip() == "capstan lr=0.5"
    assert "Data and pipelines are up to date" in run(DVC, "status", cwd=tmp_path)
