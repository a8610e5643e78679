"""Tests of puzzles.py: the rules that make an answer valid, on hand-made grids, and reading
puzzles typed by a user."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import puzzles as P  # noqa: E402


def sudoku(text):
    return np.array([1 if c == "." else int(c) + 1 for c in text], np.uint8)


def maze(rows):
    return P.TOKEN[np.frombuffer("".join(rows).encode(), np.uint8)]


# a 4x4 puzzle with two solutions: the dataset keeps one, the other is just as valid
PUZZLE = sudoku("12.." "34.." "21.." "43..")
LABEL = sudoku("1234" "3412" "2143" "4321")
OTHER = sudoku("1243" "3421" "2134" "4312")


def test_sudoku_validity():
    assert not (OTHER == LABEL).all()
    repeat = LABEL.copy()
    repeat[[2, 3]] = repeat[[3, 2]]     # row 1 swapped: columns 3 and 4 now repeat
    given = OTHER.copy()
    given[[0, 1]] = given[[1, 0]]       # the givens 1, 2 of row 1 swapped
    blank = LABEL.copy()
    blank[5] = 1                        # a cell left blank
    answers = np.stack([LABEL, OTHER, repeat, given, blank])
    codes = P.sudoku_problems(np.stack([PUZZLE] * 5), answers)
    assert codes.tolist() == [0, 0, 3, 2, 1]
    assert P.problems("sudoku", np.stack([PUZZLE] * 5), answers).tolist() == codes.tolist()
    assert P.sudoku_problem(PUZZLE, OTHER) is None
    assert P.sudoku_problem(PUZZLE, repeat) == "column 3 repeats 4"
    assert P.sudoku_problem(PUZZLE, given) == "it changes a given"
    assert P.sudoku_problem(PUZZLE, blank) == "cells are not filled with digits"


# two shortest paths of 4 moves from S to G, around the block in the middle
MAZE = ["#######",
        "#S  ###",
        "# # ###",
        "#  G###",
        "#######",
        "#######",
        "#######"]


def path(cells):
    grid = maze(MAZE).reshape(7, 7)
    for r, c in cells:
        grid[r, c] = P.PATH
    return grid.ravel()


def test_maze_validity():
    x = maze(MAZE)
    label = path([(1, 2), (1, 3), (2, 3)])           # right, right, down, down
    other = path([(2, 1), (3, 1), (3, 2)])           # down, down, right, right: as short, not the label
    longer = path([(1, 2), (1, 3), (2, 3), (3, 2)])  # one cell (one move) too many
    broken = path([(1, 2), (2, 3), (3, 1)])          # the right number of cells, not connected
    on_wall = path([(1, 2), (1, 3), (2, 2)])         # through a wall
    answers = np.stack([label, other, longer, broken, on_wall])
    codes = P.maze_problems(np.stack([x] * 5), answers)
    assert codes.tolist() == [0, 0, 4, 4, 2]
    assert P.check_maze(x.reshape(7, 7), other.reshape(7, 7)) is None
    assert "not a shortest path" in P.check_maze(x.reshape(7, 7), longer.reshape(7, 7))
    closed = x.reshape(7, 7).copy()
    closed[2, 1] = closed[1, 2] = P.WALL             # G cannot be reached
    assert P.maze_problems(closed.ravel()[None], closed.ravel()[None]).tolist() == [3]
    two_starts = x.copy()
    two_starts[9] = P.START
    assert P.check_maze(two_starts.reshape(7, 7), two_starts.reshape(7, 7)) == "2 starts 'S' in question, expected 1"


def test_reading_typed_puzzles():
    assert P.sudoku_tokens("\ufeff12..|34..\n21.. 43..", 4).tolist() == PUZZLE.tolist()  # BOM, separators
    with pytest.raises(ValueError, match="this model solves 4x4 Sudoku, the puzzle is 9x9"):
        P.sudoku_tokens("." * 81, 4)
    text = "\r\n".join(MAZE).replace("S  ", "So ")  # CR LF and a path cell: read as the question
    assert P.maze_tokens(text, 7).tolist() == maze(MAZE).tolist()
    with pytest.raises(ValueError, match="a maze needs one goal 'G', found 0"):
        P.maze_tokens("\n".join(MAZE).replace("G", " "), 7)
    assert P.kind_of(6, 16) == "sudoku" and P.kind_of(6, 49) == "maze" and P.kind_of(12, 900) == "arc"
    with pytest.raises(ValueError, match="cannot tell the puzzle kind"):
        P.kind_of(7, 50)
