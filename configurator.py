"""
nanoGPT-style configuration: a script keeps its defaults as plain globals, and

    python train.py config/sudoku.py --lr=3e-4 --device=cpu

runs config/sudoku.py (plain Python assignments) over them, then applies each --key=value.
Values are parsed with ast.literal_eval (a bare word stays a string) and must keep the type of
the default (an int is accepted where a float is expected). An unknown key is an error that
names the closest valid keys.
"""
import ast
import difflib
import sys


def _check(key, value, defaults, where):
    if key not in defaults:
        close = difflib.get_close_matches(key, list(defaults), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SystemExit(f"{where}: unknown config key '{key}'{hint}")
    want = type(defaults[key])
    if want is float and type(value) is int:
        value = float(value)
    if type(value) is not want:
        raise SystemExit(f"{where}: '{key}' must be {want.__name__} like its default "
                         f"{defaults[key]!r}, got {type(value).__name__} {value!r}")
    return value


def read_config_file(path):
    """The assignments of a config file (plain Python), without private names, imports or functions."""
    try:
        with open(path) as f:
            source = f.read()
    except OSError as e:
        raise SystemExit(f"cannot read config file {path}: {e.strerror}")
    scope = {}
    exec(compile(source, path, "exec"), {}, scope)
    return {k: v for k, v in scope.items()
            if not k.startswith("_") and not callable(v) and type(v).__name__ != "module"}


def configure(namespace, argv=None, keys=None):
    """Apply config files and --key=value overrides from argv to `namespace` (a script's globals).
    `keys` are the overridable names (default: every int/float/bool/str global not starting
    with '_'). Returns the resolved config as a dict."""
    argv = sys.argv[1:] if argv is None else argv
    if keys is None:
        keys = [k for k, v in namespace.items()
                if not k.startswith("_") and type(v) in (int, float, bool, str)]
    defaults = {k: namespace[k] for k in keys}
    for arg in argv:
        if not arg.startswith("--"):
            for key, value in read_config_file(arg).items():
                namespace[key] = _check(key, value, defaults, arg)
        else:
            key, eq, text = arg[2:].partition("=")
            if not eq:
                raise SystemExit(f"override '{arg}' must look like --key=value")
            try:
                value = ast.literal_eval(text)
            except (SyntaxError, ValueError):
                value = text  # a bare word such as --device=cpu
            if type(defaults.get(key)) is str:
                value = text  # strings stay verbatim: --init_from=123 is a path, not an int
            namespace[key] = _check(key, value, defaults, arg)
    return {k: namespace[k] for k in keys}
