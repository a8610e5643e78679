"""Tests of prepare_sudoku.py: every written grid (originals and augmentations) is a solved grid
that agrees with its input, for sizes 4, 6 and 9; generated puzzles have exactly one solution
(checked by a plain backtracking solver written here) and respect the difficulty bounds; bad CSV
rows are named by file:line; the Hugging Face path works against a local server, interrupted
transfers included; the output is byte-reproducible."""
import functools
import http.server
import json
import os
import socket
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prepare_sudoku as ps  # noqa: E402
from puzzle_data import load_split  # noqa: E402

BOX = {4: (2, 2), 6: (2, 3), 9: (3, 3)}

# -----------------------------------------------------------------------------
# independent references: share no code with prepare_sudoku

def units_of(g, size):
    """Rows, columns and boxes of (B, size, size) grids as (B, 3*size, size)."""
    br, bc = BOX[size]
    boxes = g.reshape(-1, size // br, br, size // bc, bc).transpose(0, 1, 3, 2, 4)
    return np.concatenate([g, g.transpose(0, 2, 1), boxes.reshape(-1, size, size)], axis=1)


def solved(grids, size):
    """(B,) every row, column and box of a (B, size*size) digit grid is 1..size once."""
    u = np.sort(units_of(np.asarray(grids).reshape(-1, size, size), size), axis=2)
    return (u == np.arange(1, size + 1)).all(axis=(1, 2))


@functools.lru_cache(None)
def layout(size):
    """Each cell's peers (same row, column or box) and the list of units, as Python lists."""
    br, bc = BOX[size]
    units = [[r * size + c for c in range(size)] for r in range(size)]
    units += [list(u) for u in zip(*units)]
    units += [[(r + a) * size + c + b for a in range(br) for b in range(bc)]
              for r in range(0, size, br) for c in range(0, size, bc)]
    peers = [sorted({j for u in units if i in u for j in u} - {i}) for i in range(size * size)]
    return peers, units


def options(g, i, size):
    return set(range(1, size + 1)) - {g[p] for p in layout(size)[0][i]}


def count_solutions(puzzle, size, limit=2):
    """Plain recursive backtracking on a list, most constrained cell first. Returns
    (number of solutions up to limit, the first solution)."""
    g, found = [int(v) for v in puzzle], []

    def rec():
        empty = [i for i, v in enumerate(g) if v == 0]
        if not empty:
            found.append(list(g))
            return
        i, opts = min(((i, options(g, i, size)) for i in empty), key=lambda t: len(t[1]))
        for v in sorted(opts):
            g[i] = v
            rec()
            g[i] = 0
            if len(found) >= limit:
                return
    rec()
    return len(found), (found[0] if found else None)


def singles_solve(puzzle, size):
    """True if naked and hidden singles alone fill the puzzle (what rating 0 means)."""
    g, units = [int(v) for v in puzzle], layout(size)[1]
    while 0 in g:
        cand = {i: options(g, i, size) for i, v in enumerate(g) if v == 0}
        moves = [(i, min(c)) for i, c in cand.items() if len(c) == 1]
        moves += [(spots[0], v) for u in units for v in range(1, size + 1)
                  if len(spots := [i for i in u if v in cand.get(i, ())]) == 1]
        if not moves or not all(cand.values()):
            return False
        g[moves[0][0]] = moves[0][1]
    return True


@functools.lru_cache(None)
def puzzles(size):
    """Puzzles, solutions and ratings made once per size and shared by the tests."""
    return ps.generate(size, {4: 12, 6: 20, 9: 12}[size], np.random.default_rng(0))


def csv_text(q, a, r, header=True):
    rows = ["source,question,answer,rating"] if header else []
    for i in range(len(q)):
        qs = "".join("." if d == 0 else str(d) for d in q[i])
        rows.append(f"gen{i},{qs},{''.join(map(str, a[i]))},{r[i]}")
    return "\n".join(rows) + "\n"


def files(path):
    out = {}
    for root, _, names in os.walk(path):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), path)] = f.read()
    return out

# -----------------------------------------------------------------------------
# the generator

@pytest.mark.parametrize("size", [4, 6, 9])
def test_generated_puzzles_are_unique_and_minimal(size):
    q, a, r = puzzles(size)
    n = len(q)
    assert q.shape == a.shape == (n, size * size) and solved(a, size).all()
    assert ((q == 0) | (q == a)).all()
    assert len({g.tobytes() for g in a}) == n  # every solution grid distinct
    for i in range(n if size < 9 else 4):
        count, sol = count_solutions(q[i], size)
        assert count == 1 and sol == a[i].tolist()
        assert (r[i] == 0) == singles_solve(q[i], size)  # rating 0 <=> singles suffice
    for i in range(3 if size < 9 else 0):  # minimal: blanking any given makes it ambiguous
        for cell in np.flatnonzero(q[i]):
            p = q[i].copy()
            p[cell] = 0
            assert count_solutions(p, size)[0] == 2


def test_generator_difficulty_bounds():
    rng = np.random.default_rng(1)
    q, a, r = ps.generate(6, 15, rng, min_givens=12, max_givens=13)
    givens = (q > 0).sum(1)
    assert ((givens >= 12) & (givens <= 13)).all()
    q, a, r = ps.generate(6, 10, rng, min_rating=1, max_rating=3)
    assert ((r >= 1) & (r <= 3)).all()
    for i in range(len(q)):
        assert count_solutions(q[i], 6)[0] == 1 and not singles_solve(q[i], 6)
    q, a, r = ps.generate(6, 10, rng, max_givens=9)  # rejects most minimal puzzles
    assert ((q > 0).sum(1) <= 9).all() and all(count_solutions(p, 6)[0] == 1 for p in q)
    q, a, r = ps.generate(9, 3, rng, min_givens=28, max_givens=29)
    assert (((q > 0).sum(1) >= 28) & ((q > 0).sum(1) <= 29)).all()
    assert all(count_solutions(p, 9)[0] == 1 for p in q)


def test_generator_test_split_never_shares_a_grid(tmp_path):
    out = tmp_path / "gen"
    ps.main(["--source=generate", "--size=4", "--num_train=150", "--num_test=60",
             "--num_aug=2", f"--output_dir={out}"])
    _, tr = load_split(str(out), "train")
    _, te = load_split(str(out), "test")
    originals = {bytes(g) for g in tr["labels"][tr["puzzle_indices"][tr["group_indices"][:-1]]]}
    assert len(originals) == 150
    assert not originals & {bytes(g) for g in te["labels"]}
    with pytest.raises(SystemExit, match="no new 4x4 puzzle met the bounds"):  # none needs 5
        ps.generate(4, 5, np.random.default_rng(0), min_rating=5)

# -----------------------------------------------------------------------------
# augmentation and the written dataset

@pytest.mark.parametrize("size", [4, 6, 9])
def test_every_written_grid_is_solved_and_agrees(tmp_path, size):
    q, a, _ = (x[:8] for x in puzzles(size))
    num_aug = 40
    ps.write_dataset(ps.OutputDir(str(tmp_path / "d")), size, (q, a), (q[:3], a[:3]), num_aug,
                     np.random.default_rng(0))
    meta, tr = load_split(str(tmp_path / "d"), "train")
    assert meta["vocab_size"] == size + 2 and meta["seq_len"] == size * size
    assert meta["total_groups"] == 8 and meta["total_puzzles"] == 8 * (num_aug + 1)
    x, y = np.asarray(tr["inputs"]), np.asarray(tr["labels"])
    assert x.dtype == np.uint8 and x.shape == (8 * (num_aug + 1), size * size)
    assert solved(y - 1, size).all()                  # labels: digit + 1
    assert ((x == 1) | (x == y)).all()                # givens agree, blank = 1
    assert (tr["group_indices"] == np.arange(0, len(x) + 1, num_aug + 1)).all()
    assert (tr["puzzle_indices"] == np.arange(len(x) + 1)).all()
    assert (np.asarray(tr["puzzle_identifiers"]) == 0).all()
    x3 = x.reshape(8, num_aug + 1, -1)
    assert (x3[:, 0] == q + 1).all()                   # each group starts with its original
    assert ((x3 == 1).sum(2) == (q == 0).sum(1)[:, None]).all()  # same number of blanks
    assert len({v.tobytes() for v in x3[0]}) > num_aug // 2  # versions really differ
    meta, te = load_split(str(tmp_path / "d"), "test")
    assert (te["inputs"] == q[:3] + 1).all() and (te["group_indices"] == np.arange(4)).all()
    with open(tmp_path / "d" / "identifiers.json") as f:
        assert json.load(f) == ["<blank>"]


@pytest.mark.parametrize("size", [6, 9])
def test_transpose_only_where_boxes_are_square(size):
    # Blanks sit in rows 0-1 only: row/column permutations keep "blanks in 2 rows", a transpose
    # moves them into 2 columns.
    a = puzzles(size)[1][:1]
    q = a.copy().reshape(1, size, size)
    q[0, :2, : size - 1] = 0
    x, y = ps.augment(np.repeat(q.reshape(1, -1) + 1, 200, 0), np.repeat(a + 1, 200, 0),
                      size, np.random.default_rng(0))
    assert solved(y - 1, size).all() and ((x == 1) | (x == y)).all()
    rows_with_blanks = ((x == 1).reshape(-1, size, size).any(2)).sum(1)
    transposed = rows_with_blanks > 2
    assert transposed.any() == (size == 9) and (~transposed).any()


def test_cli_csv_end_to_end_and_filters(tmp_path):
    q, a, r = puzzles(9)
    (tmp_path / "train.csv").write_text(csv_text(q, a, r))
    (tmp_path / "test.csv").write_text(csv_text(q[:5], a[:5], r[:5]))
    (tmp_path / "empty.csv").write_text("source,question,answer,rating\n")
    out = tmp_path / "out"
    args = ["--source=csv", f"--train_csv={tmp_path}/train.csv", f"--test_csv={tmp_path}/test.csv",
            f"--output_dir={out}", "--num_aug=3"]
    ps.main(args + ["--subsample_size=5"])
    meta, tr = load_split(str(out), "train")
    assert meta["total_groups"] == 5 and len(tr["inputs"]) == 20
    chosen = {bytes(g) for g in tr["inputs"][::4] - 1}
    assert chosen <= {bytes(g) for g in q}              # a subset of the train rows
    threshold = int(np.median(r))
    ps.main(args + ["--subsample_size=0", f"--min_difficulty={threshold}"])
    _, tr = load_split(str(out), "train")
    _, te = load_split(str(out), "test")
    hard = r >= threshold
    assert len(tr["inputs"]) == 4 * hard.sum() and len(te["inputs"]) == hard[:5].sum()
    assert sorted(bytes(g) for g in tr["inputs"][::4] - 1) == sorted(bytes(g) for g in q[hard])
    ps.main(args + ["--num_aug=0", "--subsample_size=5"])
    meta, tr = load_split(str(out), "train")
    assert (meta["total_puzzles"], meta["total_groups"]) == (5, 5) and (tr["inputs"] - 1 <= 9).all()
    before = open(out / "train" / "all__inputs.npy", "rb").read()
    with pytest.raises(SystemExit, match="empty.csv: no test puzzles"):  # an empty split is an error
        ps.main(args + ["--num_aug=0", "--subsample_size=5", f"--test_csv={tmp_path}/empty.csv"])
    assert open(out / "train" / "all__inputs.npy", "rb").read() == before  # the dataset is untouched


def test_default_arguments_build_the_papers_set():
    args = ps.parse_args([])
    assert (args.source, args.subsample_size, args.num_aug) == ("hf", 1000, 1000)
    assert args.output_dir == "data/sudoku-extreme-1k-aug-1000"


def test_same_seed_same_bytes(tmp_path):
    def run(name, seed, source):
        out = tmp_path / name
        ps.main(source + [f"--output_dir={out}", f"--seed={seed}", "--num_aug=5"])
        return files(out)
    gen = ["--source=generate", "--size=6", "--num_train=40", "--num_test=10"]
    assert run("a", 3, gen) == run("b", 3, gen) != run("c", 4, gen)
    q, a, r = puzzles(9)
    (tmp_path / "t.csv").write_text(csv_text(q, a, r))
    csv = ["--source=csv", f"--train_csv={tmp_path}/t.csv", f"--test_csv={tmp_path}/t.csv",
           "--subsample_size=6"]
    assert run("d", 3, csv) == run("e", 3, csv) != run("f", 4, csv)


def test_interrupted_build_leaves_no_dataset(tmp_path, monkeypatch):
    q, a, _ = puzzles(6)
    real = ps.write_split

    def write_split(root, split, *args, **kw):
        if split == "test":
            raise KeyboardInterrupt
        return real(root, split, *args, **kw)
    monkeypatch.setattr(ps, "write_split", write_split)
    with pytest.raises(KeyboardInterrupt):
        ps.write_dataset(ps.OutputDir(str(tmp_path / "d")), 6, (q, a), (q, a), 2, np.random.default_rng(0))
    assert os.listdir(tmp_path) == []

# -----------------------------------------------------------------------------
# reading CSV files

def good_row(i=0):
    q, a, r = puzzles(9)
    return csv_text(q[i:i + 1], a[i:i + 1], r[i:i + 1], header=False).strip()


def bad_rows():
    src, q, a, rating = good_row().split(",")
    swapped = a[1] + a[0] + a[2:]  # rows still fine, columns and boxes not
    given = next(i for i, ch in enumerate(q) if ch != ".")
    other = "1" if a[given] != "1" else "2"
    return [
        (f"{q},{a}", "expected 4 columns"),
        (f"{src},{q[:-1]},{a},{rating}", "question has 80 characters, expected 81"),
        (f"{src},{q},{a}7,{rating}", "answer has 82 characters, expected 81"),
        (f"{src},x{q[1:]},{a},{rating}", "question has 'x'"),
        (f"{src},{q},.{a[1:]},{rating}", "answer has '.'"),
        (f"{src},{q.replace('.', '0')},{swapped},{rating}", "not a solved grid"),
        (f"{src},{q[:given]}{other}{q[given + 1:]},{a},{rating}", "contradicts the question"),
        (f"{src},{q},{a},hard", "rating 'hard' is not a whole number"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_rows_are_named_by_file_and_line(tmp_path, case):
    row, message = bad_rows()[case]
    path = tmp_path / "bad.csv"
    path.write_text("source,question,answer,rating\n" + good_row(1) + "\n" + row + "\n"
                    + good_row(2) + "\n")
    with pytest.raises(SystemExit) as e:
        ps.parse_csv(str(path))
    assert str(e.value).startswith(f"{path}:3: ") and message in str(e.value), e.value
    q, a, r = ps.parse_csv(str(path), skip_invalid=True)
    assert len(q) == 2


def test_csv_format_details_and_blocks(tmp_path, capsys):
    q, a, r = puzzles(9)
    text = csv_text(q, a, r).replace("gen3,", '"gen,3",')  # a quoted source with a comma
    text = text.replace("\n", "\r\n", 5) + "\n\n"           # some CRLF, trailing blank lines
    lines = text.split("\n")
    lines.insert(9, bad_rows()[5][0])                       # file line 10 is bad
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines).replace(".", "0", 200))
    expect = ps.parse_csv(str(path), skip_invalid=True)
    assert "skipped 1 invalid rows like line 10" in capsys.readouterr().out
    assert (expect[0] == q).all() and (expect[1] == a).all() and (expect[2] == r).all()
    for block in (50, 171, 1000):  # blocks that cut lines anywhere: same rows, same line
        got = ps.parse_csv(str(path), skip_invalid=True, block_bytes=block)
        assert all((g == e).all() for g, e in zip(got, expect))
        with pytest.raises(SystemExit, match=r"x\.csv:10: answer is not a solved grid"):
            ps.parse_csv(str(path), block_bytes=block)
    sub = ps.parse_csv(str(path), skip_invalid=True, subsample_size=4, block_bytes=300,
                       rng=np.random.default_rng(0))
    assert len(sub[0]) == 4 and {bytes(g) for g in sub[0]} <= {bytes(g) for g in q}
    same = ps.parse_csv(str(path), skip_invalid=True, subsample_size=4,
                        rng=np.random.default_rng(0))
    assert all((s == t).all() for s, t in zip(sub, same))  # the sample ignores block sizes
    (tmp_path / "six.csv").write_text(csv_text(*puzzles(6)))
    six = ps.parse_csv(str(tmp_path / "six.csv"), size=6)
    assert (six[1] == puzzles(6)[1]).all()
    with pytest.raises(SystemExit, match="six.csv:2: question has 36 characters, expected 81"):
        ps.parse_csv(str(tmp_path / "six.csv"))

# -----------------------------------------------------------------------------
# downloading from a local server

class Server:
    """Serves `files` on 127.0.0.1 with Range support. The first `cut` responses stop halfway
    and close the connection; ranges=False ignores Range; chunked=True streams chunks."""

    def __init__(self, files, cut=0, ranges=True, chunked=False):
        self.files, self.cut, self.requests = files, cut, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = server.files.get(self.path.rsplit("/", 1)[-1])
                asked = self.headers.get("Range")
                server.requests.append((self.path, asked))
                if body is None:
                    return self.send_error(404)
                start = int(asked[6:].split("-")[0]) if asked and ranges else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header(*(("Transfer-Encoding", "chunked") if chunked
                                   else ("Content-Length", str(len(body) - start))))
                self.send_header("Connection", "close")
                self.end_headers()
                data, cut = body[start:], server.cut > 0
                server.cut -= cut
                if cut:
                    data = data[:len(data) // 2]
                if chunked:
                    data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in
                                    (data[i:i + 1000] for i in range(0, len(data), 1000)))
                    data += b"" if cut else b"0\r\n\r\n"
                self.wfile.write(data)
                self.close_connection = True

            def log_message(self, *args):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets/x/resolve/main"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    q, a, r = puzzles(9)
    content = {"train.csv": csv_text(q, a, r).encode(),
               "test.csv": csv_text(q[:4], a[:4], r[:4]).encode()}
    servers = []

    def start(**kw):
        servers.append(Server(content, **kw))
        return servers[-1]
    yield content, start
    for s in servers:
        s.close()


def hf_args(url, tmp_path):
    return ["--source=hf", f"--hf_url={url}", f"--cache_dir={tmp_path}/cache",
            f"--output_dir={tmp_path}/out", "--subsample_size=6", "--num_aug=2"]


@pytest.mark.parametrize("mode", [dict(), dict(cut=1), dict(cut=1, ranges=False),
                                  dict(cut=1, chunked=True)])
def test_download_with_interruptions(tmp_path, served, mode):
    content, start = served
    server = start(**mode)
    ps.main(hf_args(server.url, tmp_path))
    for name, body in content.items():
        assert (tmp_path / "cache" / name).read_bytes() == body
    assert sorted(os.listdir(tmp_path / "cache")) == ["test.csv", "train.csv"]  # no .part left
    if mode.get("cut") and mode.get("ranges", True) and not mode.get("chunked"):
        assert any(rng and rng != "bytes=0-" for _, rng in server.requests)  # it resumed
    meta, tr = load_split(str(tmp_path / "out"), "train")
    assert meta["total_groups"] == 6 and len(tr["inputs"]) == 18
    requests = len(server.requests)
    ps.main(hf_args(server.url, tmp_path))  # cached: nothing downloaded again
    assert len(server.requests) == requests


def test_download_that_keeps_failing_then_resumes(tmp_path, served):
    content, start = served
    broken = start(cut=100)
    with pytest.raises(SystemExit, match="cannot download"):
        ps.main(hf_args(broken.url, tmp_path))
    assert not (tmp_path / "cache" / "train.csv").exists() and not (tmp_path / "out").exists()
    part = (tmp_path / "cache" / "train.csv.part").read_bytes()
    assert 0 < len(part) < len(content["train.csv"]) and content["train.csv"].startswith(part)
    good = start()
    ps.main(hf_args(good.url, tmp_path))
    assert (tmp_path / "cache" / "train.csv").read_bytes() == content["train.csv"]
    assert good.requests[0][1] == f"bytes={len(part)}-"  # resumed where the last run stopped


def test_no_network_fails_fast_and_names_the_offline_options(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(SystemExit) as e:
        ps.main(hf_args(f"http://127.0.0.1:{port}/x", tmp_path))
    assert time.time() - t0 < 10
    assert "--source=csv" in str(e.value) and "--source=generate" in str(e.value)
    assert not (tmp_path / "out").exists()
