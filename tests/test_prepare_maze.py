"""Tests of prepare_maze.py: generated and augmented labels are unique shortest paths (checked by a
breadth-first search written independently here), bad CSV rows are named by file:line, the Hugging
Face download path works against a local server, and the output is byte-reproducible."""
import csv
import functools
import http.server
import os
import sys
import threading
import time
from collections import deque

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prepare_maze as pm  # noqa: E402
import puzzles as P  # noqa: E402
from puzzle_data import load_split  # noqa: E402


def text(grid):
    return "".join(P.CHARSET[t - 1] for t in np.asarray(grid).ravel())


def reference_moves(inp, label):
    """Assert (inp, label) is a maze whose label marks its unique shortest S-G path; return its
    length. Plain BFS over a dict with exact path counts, sharing no code with prepare_maze."""
    n, m = inp.shape
    cell = {(r, c): P.CHARSET[inp[r, c] - 1] for r in range(n) for c in range(m)}
    assert sorted(cell.values()).count("S") == 1 and sorted(cell.values()).count("G") == 1
    assert "o" not in cell.values()
    start = next(p for p, ch in cell.items() if ch == "S")
    goal = next(p for p, ch in cell.items() if ch == "G")
    near = lambda p: [(p[0] + dr, p[1] + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    dist, ways, queue = {start: 0}, {start: 1}, deque([start])
    while queue:
        u = queue.popleft()
        for v in near(u):
            if cell.get(v, "#") == "#":
                continue
            if v not in dist:
                dist[v], ways[v] = dist[u] + 1, ways[u]
                queue.append(v)
            elif dist[v] == dist[u] + 1:
                ways[v] += ways[u]
    assert ways.get(goal) == 1, f"{ways.get(goal)} shortest paths"
    # the input is the label with the path removed
    assert np.array_equal(np.where(label == P.PATH, P.OPEN, label), inp)
    path = set(zip(*map(list, np.nonzero(label == P.PATH))))
    assert len(path) == dist[goal] - 1
    u = start  # walk S -> G over the 'o' cells: a walk of dist[goal] moves is a shortest path
    for _ in range(len(path)):
        u = next(v for v in near(u) if v in path)
        path.remove(u)
    assert goal in near(u)
    return dist[goal]


def test_generated_labels_are_unique_shortest_paths():
    rng = np.random.default_rng(1)
    for size, count in ((7, 40), (8, 40), (12, 30), (13, 30), (30, 3)):
        for _ in range(count):
            inp, label = pm.generate_maze(size, rng)
            assert inp.shape == (size, size) and inp.dtype == np.uint8
            assert reference_moves(inp, label) >= pm.default_min_path_len(size)
            assert P.check_maze(inp, label) is None
            # the reader's own solver agrees
            again, moves, unique = pm.shortest_path_label(inp)
            assert unique and np.array_equal(again, label)
    assert pm.default_min_path_len(30) == 111  # Maze-Hard: longer than 110


def test_min_path_len_and_loops():
    rng = np.random.default_rng(2)
    for _ in range(20):
        inp, label = pm.generate_maze(15, rng, min_path_len=40)
        assert reference_moves(inp, label) >= 40
    inp, _ = pm.generate_maze(15, rng, loops=0)  # a perfect maze: open cells form a tree
    k = 7
    assert (inp != P.WALL).sum() == 2 * k * k - 1
    with pytest.raises(ValueError, match="lower --min_path_len"):
        pm.generate_maze(9, rng, min_path_len=200, max_tries=5)


def test_dihedral():
    grid = np.arange(12).reshape(3, 4)
    versions = [P.dihedral(grid, k) for k in range(8)]
    assert len({(v.shape, v.tobytes()) for v in versions}) == 8  # all distinct
    assert all(sorted(v.ravel()) == list(range(12)) for v in versions)
    rng = np.random.default_rng(3)
    for _ in range(10):
        inp, label = pm.generate_maze(11, rng)
        moves = {reference_moves(P.dihedral(inp, k), P.dihedral(label, k)) for k in range(8)}
        assert len(moves) == 1


def test_check_maze_rejects_wrong_labels():
    rows = ["#######", "#S   G#", "# ### #", "#     #", "#######", "#######", "#######"]
    inp = P.TOKEN[np.frombuffer("".join(rows).encode(), np.uint8)].reshape(7, 7)
    right = inp.copy()
    right[1, 2:5] = P.PATH
    assert P.check_maze(inp, right) is None
    detour = inp.copy()
    detour[2, 1] = detour[3, 1:6] = detour[2, 5] = P.PATH  # 8 moves around the block, not 4
    assert "not a shortest path" in P.check_maze(inp, detour)
    short = right.copy()
    short[1, 3] = P.OPEN
    assert "not a shortest path" in P.check_maze(inp, short)
    extra = right.copy()
    extra[3, 3] = P.PATH
    assert "not a shortest path" in P.check_maze(inp, extra)
    scattered = right.copy()  # the right number of cells, but not a path
    scattered[1, 4], scattered[3, 3] = P.OPEN, P.PATH
    assert "not a shortest path" in P.check_maze(inp, scattered)
    on_wall = right.copy()
    on_wall[2, 3] = P.PATH
    assert "answer is not the question" in P.check_maze(inp, on_wall)


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "question", "answer", "rating"])
        w.writerows(rows)


def good_rows(n, size=9, seed=0):
    rng = np.random.default_rng(seed)
    mazes = [pm.generate_maze(size, rng) for _ in range(n)]
    return [["gen", text(x), text(y), "0"] for x, y in mazes]


def test_bad_csv_rows_are_named_by_file_and_line(tmp_path):
    rows = good_rows(5)
    q, a = rows[0][1], rows[0][2]
    no_start, two_starts = q.replace("S", " "), q.replace(" ", "S", 1)
    bad = [  # (row, promised message)
        (["x", q[:-1], a[:-1], "0"], "question has 80 characters, expected 81 for a 9x9 maze"),
        (["x", q.replace("#", "x", 1), a, "0"], "unknown character 'x' in question"),
        (["x", no_start, a.replace("S", " "), "0"], "0 starts 'S' in question, expected 1"),
        (["x", two_starts, a.replace(" ", "S", 1), "0"], "2 starts 'S' in question, expected 1"),
        (["x", q, a.replace("o", " ", 1), "0"], "not a shortest path"),
        (["x", q], "2 columns"),
    ]
    for row, message in bad:
        path = str(tmp_path / "train.csv")
        write_csv(path, rows[:2] + [row] + rows[2:])
        with pytest.raises(ValueError) as e:
            pm.parse_csv(path)
        assert str(e.value).startswith(f"{path}:4: ") and message in str(e.value), str(e.value)
    write_csv(path, rows[:2] + [row for row, _ in bad] + rows[2:])
    inputs, labels, skipped = pm.parse_csv(path, skip_invalid=True)
    assert skipped == len(bad) and len(inputs) == 5
    assert [text(x) for x in labels] == [r[2] for r in rows]
    # through the command line: one line naming file:line, no traceback
    write_csv(path, rows)
    write_csv(str(tmp_path / "test.csv"), rows[:1] + [bad[2][0]])
    with pytest.raises(SystemExit) as e:
        pm.main(["--source=csv", f"--train_csv={path}", f"--test_csv={tmp_path}/test.csv",
                 f"--output_dir={tmp_path}/out"])
    expected = f"{tmp_path}/test.csv:3: 0 starts 'S' in question, expected 1"
    assert str(e.value) == f"prepare_maze.py: {expected}"
    pm.main(["--source=csv", f"--train_csv={path}", f"--test_csv={tmp_path}/test.csv",
             f"--output_dir={tmp_path}/out", "--skip_invalid"])
    meta, arrays = load_split(f"{tmp_path}/out", "train")
    assert meta["total_groups"] == 5 and meta["seq_len"] == 81 and meta["vocab_size"] == 6


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_from_local_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_csv(str(served / "train.csv"), good_rows(6, seed=1))
    write_csv(str(served / "test.csv"), good_rows(4, seed=2))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["--source=hf", f"--hf_url={url}", f"--cache_dir={cache}", f"--output_dir={out}",
            "--aug"]
    try:
        pm.main(args)
    finally:
        server.shutdown()
        server.server_close()
    assert (cache / "train.csv").read_bytes() == (served / "train.csv").read_bytes()
    first = {f: (out / f).read_bytes() for f in ("train/all__inputs.npy", "test/all__labels.npy")}
    pm.main(args)  # the server is gone: the cache serves
    assert first == {f: (out / f).read_bytes() for f in first}
    meta, arrays = load_split(str(out), "train")
    assert meta["total_groups"] == 6 and meta["total_puzzles"] == 48  # 8 dihedral versions each
    assert load_split(str(out), "test")[0]["total_puzzles"] == 4  # test is not augmented
    # no network: a fast, clear failure
    t0 = time.time()
    with pytest.raises(SystemExit, match="cannot download .*offline"):
        pm.main(["--source=hf", f"--hf_url={url}", f"--cache_dir={tmp_path}/empty",
                 f"--output_dir={tmp_path}/out2"])
    assert time.time() - t0 < 10 and not os.path.exists(f"{tmp_path}/out2")


def test_generate_output_reproducible_and_loadable(tmp_path):
    def run(seed, out):
        pm.main(["--source=generate", "--size=10", "--num_train=40", "--num_test=30", "--aug",
                 f"--seed={seed}", f"--output_dir={out}"])
        return {f"{d}/{f}": open(os.path.join(out, d, f), "rb").read()
                for d in ("", "train", "test") for f in sorted(os.listdir(os.path.join(out, d)))
                if os.path.isfile(os.path.join(out, d, f))}
    a, b, c = run(0, tmp_path / "a"), run(0, tmp_path / "b"), run(1, tmp_path / "c")
    assert a == b and a.keys() == c.keys() and a != c
    assert not any(name.endswith(".tmp") or "tmp-" in name for name in os.listdir(tmp_path))

    out = str(tmp_path / "a")
    assert open(os.path.join(out, "identifiers.json")).read() == '["<blank>"]'
    meta, train = load_split(out, "train")
    assert (meta["vocab_size"], meta["seq_len"], meta["num_puzzle_identifiers"]) == (6, 100, 1)
    assert (meta["total_groups"], meta["total_puzzles"]) == (40, 320)
    assert list(train["group_indices"]) == list(range(0, 321, 8))
    assert list(train["puzzle_indices"]) == list(range(321))
    assert not train["puzzle_identifiers"].any()
    inputs, labels = (np.asarray(train[k]).reshape(-1, 10, 10) for k in ("inputs", "labels"))
    assert inputs.min() >= 1 and labels.max() <= 5
    for i in range(len(inputs)):  # every augmented label is a unique shortest path
        reference_moves(inputs[i], labels[i])
        if i % 8:  # a group's puzzles are the dihedral versions of its first one
            assert np.array_equal(inputs[i], P.dihedral(inputs[i - i % 8], i % 8))
    _, test = load_split(out, "test")
    test_inputs = np.asarray(test["inputs"]).reshape(-1, 10, 10)
    assert len(test_inputs) == 30
    # no test maze is a training maze, not even turned or mirrored
    assert not {x.tobytes() for x in inputs} & {x.tobytes() for x in test_inputs}


def test_subsample_and_limits(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    pm.main(["--source=generate", "--size=9", "--num_train=30", "--num_test=5",
             "--subsample_size=12", f"--output_dir={out}"])
    assert load_split(out, "train")[0]["total_groups"] == 12
    with pytest.raises(SystemExit):
        pm.main(["--source=generate", "--size=5", f"--output_dir={out}"])
    maze = pm.generate_maze(7, np.random.default_rng(0))  # as if there were one 7x7 maze only
    monkeypatch.setattr(pm, "generate_maze", lambda *args: maze)
    with pytest.raises(SystemExit, match="only 1 distinct 7x7 mazes"):
        pm.main(["--source=generate", "--size=7", "--num_train=2", f"--output_dir={out}"])
