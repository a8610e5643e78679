"""
Drawing puzzles for sample.py: a grid of tokens -> rows of (character, classes) -> terminal text
(ANSI colours only on a terminal) or a self-contained HTML page; and the accuracy-vs-compute
chart as an SVG file. Standard library and numpy only.
"""
import math
import os
import re
import shutil
from html import escape

import numpy as np

from puzzles import BOXES, CHARSET

CHARS = dict(sudoku="?.123456789", maze="?" + CHARSET, arc=".+0123456789")
CLASSES = dict(sudoku=["bad", "blank"] + ["digit"] * 9, maze=["bad", "wall", "open", "start", "goal", "path"],
               arc=["pad", "marker"] + [f"a{c}" for c in range(10)])
ARC_RGB = [(0, 0, 0), (0, 116, 217), (255, 65, 54), (46, 204, 64), (255, 220, 0), (170, 170, 170),
           (240, 18, 190), (255, 133, 27), (127, 219, 255), (135, 12, 37)]
ANSI = dict(given="1", filled="36", changed="30;43", bad="31", blank="2", wall="100", start="30;42",
            goal="30;41", path="30;43", marker="100",
            **{f"a{c}": f"{97 if r + g + b < 300 else 30};48;2;{r};{g};{b}" for c, (r, g, b) in enumerate(ARC_RGB)})
CSS = ("body{font-family:sans-serif;margin:1.5em}.frames{display:flex;flex-wrap:wrap;gap:1.2em}"
       "figure{margin:0}figcaption{font-size:.8em;margin-bottom:.3em}table{border-collapse:collapse}"
       "td{width:1.4em;height:1.4em;padding:0;text-align:center;font:bold .9em monospace;border:1px solid #ddd}"
       ".filled{color:#1565c0}.bad{color:#c62828}.blank{color:#bbb}.sudoku .changed{background:#ffe082}"
       ".wall{background:#444}.start{background:#43a047}.goal{background:#e53935}.path{background:#ffb300}"
       ".marker{background:#999}.changed{outline:2px solid #d500f9;outline-offset:-2px}"
       ".bl{border-left:2px solid #000}.bt{border-top:2px solid #000}"
       + "".join(f".a{c}{{background:#{r:02x}{g:02x}{b:02x}}}" for c, (r, g, b) in enumerate(ARC_RGB)))
GENERATOR = '<meta name="generator" content="trm sample.py"/>'  # marks a page as ours: safe to overwrite


def cells(kind, grid, prev=None, given=None):
    """2-D tokens -> rows of (character, classes); 'changed' marks the cells that differ from prev."""
    rows = []
    for r, line in enumerate(grid):
        row = []
        for c, t in enumerate(int(t) for t in line):
            cls = CLASSES[kind][t] if t < len(CLASSES[kind]) else "bad"
            if cls == "digit":
                cls = "given" if given is not None and given[r][c] else "filled"
            changed = int(prev is not None and prev[r][c] != t)
            row.append((CHARS[kind][t] if t < len(CHARS[kind]) else "?", [cls] + ["changed"] * changed))
        rows.append(row)
    return rows


def to_text(kind, rows, ansi):
    def paint(ch, cls):
        if not ansi:
            return ch
        if kind == "sudoku":
            code, text = ANSI["changed" if "changed" in cls else cls[0]], ch
        else:  # a coloured block two columns wide
            code, text = ANSI.get(cls[0], ""), "* " if "changed" in cls else (ch if ch in "SG?" else " ") + " "
        return f"\x1b[{code}m{text}\x1b[0m" if code else text
    lines = []
    for r, row in enumerate(rows):
        parts = [paint(ch, cls) for ch, cls in row]
        if kind == "sudoku":  # with box lines
            br, bc = BOXES[len(rows)]
            if r and r % br == 0:
                lines.append("-+-".join(["-" * (2 * bc - 1)] * (len(rows) // bc)))
            lines.append(" | ".join(" ".join(parts[i:i + bc]) for i in range(0, len(parts), bc)))
        else:
            lines.append(("" if ansi or kind == "maze" else " ").join(parts))
    return lines


def show(panels, gap=4):
    """Print (title, lines) panels side by side, as many to a row as the terminal holds."""
    width = lambda s: len(re.sub(r"\x1b\[[0-9;]*m", "", s))
    cols, i = shutil.get_terminal_size().columns, 0
    while i < len(panels):
        row, used = [], 0
        for title, lines in panels[i:]:
            w = max(width(s) for s in [title] + lines)
            if row and used + gap + w > cols:
                break
            used += w + gap * bool(row)
            row.append((w, [title] + lines))
        i += len(row)
        for k in range(max(len(b) for _, b in row)):
            parts = [b[k] if k < len(b) else "" for _, b in row]
            print((" " * gap).join([p + " " * (w - width(p)) for p, (w, _) in zip(parts, row)][:-1] + parts[-1:]))
        print()


def step_frames(kind, x, preds, q, used, steps, compact=False):
    """(caption, cells) of an input row x and of its answer after every supervision step it ran;
    with compact, a run of steps that leave the answer unchanged is one frame 'steps a-b'."""
    if kind == "arc":  # the part of the canvas that any step wrote to
        seen = np.stack([x, *preds[:used]]).reshape(-1, 30, 30) > 0
        h, w = (int(np.flatnonzero(seen.any(axis=a)).max()) + 1 for a in ((0, 2), (0, 1)))
        view = lambda t: t.reshape(30, 30)[:h, :w]
    else:
        view = lambda t: t.reshape(math.isqrt(len(x)), -1)
    given = view(x) > 1 if kind == "sudoku" else None
    sure = lambda v: 0.5 * (1 + math.tanh(float(v) / 2))  # sigmoid without overflow
    frames, prev, first = [("input", cells(kind, view(x), given=given))], None if kind == "arc" else view(x), 0
    for s in range(used):
        g = view(preds[s])
        if compact and s and (g == view(preds[s - 1])).all():
            frames[-1] = (f"steps {first + 1}-{s + 1}/{steps}: q {sure(q[first]):.2f}-{sure(q[s]):.2f}, unchanged",
                          frames[-1][1])
            continue
        changed = "" if prev is None else f", {int((g != prev).sum())} changed"
        frames.append((f"step {s + 1}/{steps}: q {sure(q[s]):.2f}{changed}", cells(kind, g, prev, given)))
        prev, first = g, s
    return frames


def html_table(kind, rows):
    box, out = BOXES.get(len(rows)) if kind == "sudoku" else None, []
    for r, row in enumerate(rows):
        tds = []
        for c, (ch, cls) in enumerate(row):
            cls = cls + ["bt"] * bool(box and r and r % box[0] == 0) + ["bl"] * bool(box and c and c % box[1] == 0)
            tds.append(f'<td class="{" ".join(cls)}">{"" if kind == "arc" else escape(ch)}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="{kind}">' + "".join(out) + "</table>"


def check_writable(path, mark):
    """An output file may replace only a file of ours (it holds `mark`): one line otherwise."""
    try:
        if os.path.exists(path) and mark not in open(path, errors="replace").read(4096):
            raise SystemExit(f"{path} exists and was not written by sample.py: choose another name")
        with open(path + ".tmp", "w"):
            pass
        os.remove(path + ".tmp")
    except OSError as e:
        raise SystemExit(f"{path}: cannot write it ({e.strerror})")


def write_file(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)  # never a half-written page under the real name
    print(f"wrote {path}")


def write_html(path, kind, title, note, sections):
    """One page, no external assets: sections of (heading, [(caption, cells)])."""
    body = [f"<h1>{escape(title)}</h1>\n<p>{escape(note)}</p>"]
    for heading, frames in sections:
        body.append(f'<h2>{escape(heading)}</h2>\n<div class="frames">')
        body += [f"<figure><figcaption>{escape(c)}</figcaption>{html_table(kind, rows)}</figure>" for c, rows in frames]
        body.append("</div>")
    write_file(path, f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>{GENERATOR}<title>{escape(title)}'
               f"</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_svg(path, title, lines, xlabel, ylabel):
    """A line chart: lines = [(label, [(x, y), ...])], x on a log2 axis, y in [0, 1]."""
    W, H, L, R, T, B = 640, 400, 60, 150, 40, 50
    xs = [x for _, pts in lines for x, _ in pts]
    lo, hi = math.floor(math.log2(min(xs))), math.ceil(math.log2(max(xs)))
    px = lambda x: L + (math.log2(x) - lo) / max(hi - lo, 1) * (W - L - R)
    py = lambda y: T + (1 - y) * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           '<!-- trm sample.py -->', f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for k in range(lo, hi + 1):  # vertical grid: powers of two of the compute
        out.append(f'<line x1="{px(2 ** k):.1f}" y1="{T}" x2="{px(2 ** k):.1f}" y2="{H - B}" stroke="#ddd"/>'
                   f'<text x="{px(2 ** k):.1f}" y="{H - B + 16}" text-anchor="middle">{2 ** k:g}x</text>')
    for k in range(11):
        y = k / 10
        out.append(f'<line x1="{L}" y1="{py(y):.1f}" x2="{W - R}" y2="{py(y):.1f}" stroke="#eee"/>'
                   f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.0%}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{escape(xlabel)}</text>'
               f'<text transform="translate(16,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    colours = ["#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#c62828", "#00838f"]
    for i, (label, pts) in enumerate(lines):
        c = colours[i % len(colours)]
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                   + " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts) + '"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>' for x, y in pts]
        out.append(f'<text x="{W - R + 10}" y="{T + 16 + 18 * i}" fill="{c}">{escape(label)}</text>')
    write_file(path, "\n".join(out + ["</svg>"]) + "\n")
