"""The README's quick-start line, run as written but shrunk (fewer puzzles, a tiny model, a few
steps) by flags appended to each command, so the line cannot silently rot."""
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quickstart_commands():
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    line = re.search(r"^(python prepare_sudoku\.py .*)$", section, re.M).group(1)
    return [shlex.split(c) for c in line.split("&&")]


def test_readme_quickstart_runs(tmp_path):
    prepare, train, sample = quickstart_commands()
    assert [c[1] for c in (prepare, train, sample)] == ["prepare_sudoku.py", "train.py", "sample.py"]
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    shrink = {  # argparse and configurator both let a later flag win
        "prepare_sudoku.py": ["--num_train=300", "--num_test=40", "--num_aug=1", f"--output_dir={data}"],
        "train.py": [f"--data_dir={data}", f"--out_dir={out}", "--hidden_size=32", "--max_steps=6",
                     "--global_batch_size=16", "--halt_max_steps=3", "--log_interval=3", "--dtype=float32"],
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
    curve = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)$", outputs[2], re.M)
    assert [int(s) for s, _, _ in curve] == [1, 2, 3]  # one row per supervision step
    assert "40 examples: exact" in outputs[2]
