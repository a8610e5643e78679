"""The README's quick-start lines (Sudoku, maze), run as written but shrunk (fewer puzzles, a tiny
model, a few steps) by flags appended to each command, so the lines cannot silently rot."""
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quickstart_commands(prepare):
    """The line of the Quick start section that runs `prepare`, without its leading install."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    line = re.search(rf"^((?:pip install -r requirements.txt && )?python {re.escape(prepare)} .*)$", section, re.M).group(1)
    commands = [shlex.split(c) for c in line.split("&&")]
    return commands[1:] if commands[0][0] == "pip" else commands


def test_readme_setup_lines_are_complete_and_ci_runs_the_test_line():
    """Two copy-paste lines on a fresh clone: one installs and runs the CPU quick start end to
    end, one installs and runs the tests, and .ci/run runs that same line."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    first = re.search(r"^pip install -r requirements.txt && python prepare_sudoku.py .*$", readme, re.M)
    test_line = re.search(r"^pip install -r requirements.txt && python -m pytest -q tests/$", readme, re.M)
    assert first and "python train.py config/sudoku6_cpu.py" in first.group(0) and "python sample.py" in first.group(0)
    assert test_line and test_line.group(0) in open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
    requirements = open(os.path.join(ROOT, "requirements.txt")).read()
    assert "torch==2.13.0+cpu" in requirements and "download.pytorch.org/whl/cpu" in requirements


SHRINK_DATA = {"prepare_sudoku.py": ["--num_train=300", "--num_test=40", "--num_aug=1"],
               "prepare_maze.py": ["--num_train=100", "--num_test=40"]}


@pytest.mark.parametrize("prepare_script", ["prepare_sudoku.py", "prepare_maze.py"])
def test_readme_quickstart_runs(tmp_path, prepare_script):
    """The Sudoku line and the maze line of the Quick start section."""
    prepare, train, sample = quickstart_commands(prepare_script)
    assert [c[1] for c in (prepare, train, sample)] == [prepare_script, "train.py", "sample.py"]
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    shrink = {  # argparse and configurator both let a later flag win
        prepare_script: SHRINK_DATA[prepare_script] + [f"--output_dir={data}"],
        "train.py": [f"--data_dir={data}", f"--out_dir={out}", "--hidden_size=32", "--max_steps=6",
                     "--global_batch_size=16", "--halt_max_steps=3", "--log_interval=3", "--dtype=float32",
                     "--compile=False"],
        "sample.py": [f"--out_dir={out}", "--dtype=float32"],
    }
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outputs = []
    for cmd in (prepare, train, sample):
        cmd = [sys.executable, *cmd[1:], *shrink[cmd[1]]]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        outputs.append(r.stdout)
    assert "step 6/" in outputs[1]
    curve = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)(?:\s+[0-9.]+)?$", outputs[2], re.M)  # step, exact, token, valid
    assert [int(s) for s, _, _ in curve] == [1, 2, 3]  # one row per supervision step
    assert "40 examples: exact" in outputs[2]
