"""The dataset builders never destroy what they did not make: each runs in a temporary folder
holding a user's file (the sentinel) that must survive, with output folders that are not theirs."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_writer import MARK, OutputDir, write_json  # noqa: E402

SMALL = {  # a few seconds each
    "prepare_sudoku.py": ["--source=generate", "--size=4", "--num_train=20", "--num_test=5", "--num_aug=1"],
    "prepare_maze.py": ["--source=generate", "--size=7", "--num_train=5", "--num_test=3"],
    "prepare_arc.py": ["--num_aug=0"],
}


def build(cwd, script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *SMALL[script], *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.fixture
def home(tmp_path):
    """A user's folder: their own file, and data/ holding a dataset of theirs (not ours)."""
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data" / "theirs" / "train").mkdir(parents=True)
    (tmp_path / "data" / "theirs" / "train" / "dataset.json").write_text("{}")
    return tmp_path


def survived(home):
    return (home / "notes.txt").read_text() == "mine" and (home / "data" / "theirs" / "train" / "dataset.json").exists()


TARGETS = [".", "", "data", "data/theirs", "notes.txt", "./data/.."]


@pytest.mark.parametrize("script, target", [(s, t) for s in SMALL for t in TARGETS
                                            if s != "prepare_arc.py" or t in (".", "data", "notes.txt")])
def test_refuses_what_it_did_not_build(home, script, target):
    r = build(home, script, f"--output_dir={target}")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and (target.strip() == "" or os.path.normpath(target) in lines[0]), r.stderr
    assert survived(home)
    assert not [n for n in os.listdir(home) if ".tmp-" in n] and not os.listdir(home / "data" / "theirs" / "train") == []


def test_replaces_its_own_dataset_only(home):
    r = build(home, "prepare_sudoku.py", "--output_dir=data/s4")
    assert r.returncode == 0, r.stderr
    first = (home / "data" / "s4" / "train" / "all__inputs.npy").read_bytes()
    assert (home / "data" / "s4" / MARK).exists()
    r = build(home, "prepare_sudoku.py", "--output_dir=data/s4", "--seed=1")  # ours: replaced
    assert r.returncode == 0, r.stderr
    assert (home / "data" / "s4" / "train" / "all__inputs.npy").read_bytes() != first
    assert sorted(os.listdir(home / "data")) == ["s4", "theirs"]  # no .tmp- or .old- folder left
    (home / "data" / "s4" / "my_results.csv").write_text("keep me")  # now it holds a user's file
    r = build(home, "prepare_sudoku.py", "--output_dir=data/s4")
    assert r.returncode != 0 and "my_results.csv" in r.stderr and "Traceback" not in r.stderr
    assert (home / "data" / "s4" / "my_results.csv").read_text() == "keep me" and survived(home)


def test_an_empty_folder_is_filled(home):
    (home / "data" / "empty").mkdir()
    r = build(home, "prepare_maze.py", "--output_dir=data/empty")
    assert r.returncode == 0, r.stderr
    assert (home / "data" / "empty" / "train" / "dataset.json").exists()


def test_stale_temporary_folders_of_dead_builds_are_removed(home):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = home / "data" / f"s4.tmp-{pid}"
    (stale / "train").mkdir(parents=True)
    write_json(str(stale / MARK), {})
    foreign = home / "data" / f"s4.tmp-{pid + 1000}"  # not ours (no mark): left alone
    foreign.mkdir()
    r = build(home, "prepare_sudoku.py", "--output_dir=data/s4")
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and foreign.exists() and "left by an interrupted build" in r.stdout


def test_swap_is_atomic_under_failure(tmp_path, monkeypatch):
    """A failure while moving the new dataset in leaves the old one in place of NAME or aside."""
    target = tmp_path / "d"
    for tag in ("old", "new"):
        with OutputDir(str(target)) as d:
            write_json(os.path.join(d, "identifiers.json"), [tag])
    assert (target / "identifiers.json").read_text() == '["new"]'
    calls = []
    real = os.replace

    def replace(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # the new dataset moving in
            raise KeyboardInterrupt
        return real(a, b)
    with pytest.raises(KeyboardInterrupt):
        with OutputDir(str(target)) as d:
            write_json(os.path.join(d, "identifiers.json"), ["newer"])
            monkeypatch.setattr(os, "replace", replace)
    monkeypatch.undo()
    assert calls[0][0] == str(target)  # the old dataset was moved aside first
    aside = [n for n in os.listdir(tmp_path) if ".old-" in n]
    assert len(aside) == 1 and (tmp_path / aside[0] / "identifiers.json").read_text() == '["new"]'
