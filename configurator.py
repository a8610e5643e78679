"""
nanoGPT-style configuration: a script keeps its defaults as plain globals, and

    python train.py config/sudoku.py --lr=3e-4 --device=cpu

runs config/sudoku.py (plain Python assignments) over them, then applies each --key=value.
Values are parsed with ast.literal_eval (a bare word stays a string; nan and inf are floats) and
must keep the type of the default (an int is accepted where a float is expected; a default of None
takes any of them). Every number has a rule, an interval such as "[1, inf)" or "(0, 1]", and a
string may have a tuple of choices; all are checked before the script does any work. Errors are one
line (SystemExit) naming where the value came from (the config file or the --key=value), the key,
the value and what was expected; an unknown key names the closest.

Also here: the device and precision pick shared by the scripts, and argparse with one-line errors
and checked numbers for the prepare_*.py builders.
"""
import argparse
import ast
import difflib
import sys
import traceback


def in_interval(value, spec):
    """Whether a number lies in an interval written like "[0, 1)" or "(0, inf)" (NaN never does)."""
    lo, hi = (float(b) for b in spec[1:-1].split(","))
    return (lo <= value if spec[0] == "[" else lo < value) and (value <= hi if spec[-1] == "]" else value < hi)


def _check(key, value, defaults, where):
    if key not in defaults:
        close = difflib.get_close_matches(key, list(defaults), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SystemExit(f"{where}: unknown config key '{key}'{hint}")
    want = type(defaults[key])
    if want is float and type(value) is int:
        value = float(value)
    if defaults[key] is not None and type(value) is not want:
        raise SystemExit(f"{where}: '{key}' must be {want.__name__} like its default "
                         f"{defaults[key]!r}, got {type(value).__name__} {value!r}")
    return value


def read_config_file(path):
    """The assignments of a config file (plain Python), without private names, imports or functions."""
    try:
        with open(path) as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}")
    scope = {}
    try:
        exec(compile(source, path, "exec"), {}, scope)
    except Exception as e:  # a syntax error, or a name it uses that is not defined
        line = getattr(e, "lineno", None) or next(
            (f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path), "?")
        raise SystemExit(f"{path}:{line}: {type(e).__name__}: {getattr(e, 'msg', None) or e}")
    return {k: v for k, v in scope.items()
            if not k.startswith("_") and not callable(v) and type(v).__name__ != "module"}


def configure(namespace, rules, argv=None):
    """Apply config files and --key=value overrides from argv to `namespace` (a script's globals),
    then check every setting against `rules` ({key: interval or tuple of choices}; every int and
    float setting must have one). Settings are the globals of type int, float, bool, str or None
    not starting with '_'. Returns the resolved config as a dict."""
    argv = sys.argv[1:] if argv is None else argv
    keys = [k for k, v in namespace.items() if not k.startswith("_") and type(v) in (int, float, bool, str, type(None))]
    unruled = [k for k in keys if type(namespace[k]) in (int, float) and k not in rules]
    assert not unruled, f"settings without a range: {unruled}"
    defaults = {k: namespace[k] for k in keys}
    where = {}  # the config file or override that set each key last, for the error messages
    for arg in argv:
        if not arg.startswith("--"):
            for key, value in read_config_file(arg).items():
                namespace[key], where[key] = _check(key, value, defaults, arg), f"{arg}: "
        else:
            key, eq, text = arg[2:].partition("=")
            if not eq:
                raise SystemExit(f"override '{arg}' must look like --key=value")
            try:
                value = ast.literal_eval(text)
            except (SyntaxError, ValueError):
                value = text  # a bare word such as --device=cpu
                if type(defaults.get(key)) is float and text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                    value = float(text)  # a number, refused by its range rather than as a word
            if type(defaults.get(key)) is str:
                value = text  # strings stay verbatim: --init_from=123 is a path, not an int
            namespace[key], where[key] = _check(key, value, defaults, arg), ""
    for key, rule in rules.items():
        value, at = namespace.get(key), where.get(key, "")
        if isinstance(rule, tuple) and value not in rule:
            raise SystemExit(f"{at}{key}={value!r} is not one of {', '.join(map(repr, rule))}")
        if isinstance(rule, str) and type(value) in (int, float) and not in_interval(value, rule):
            raise SystemExit(f"{at}{key}={value!r} is out of range: {key} must be in {rule}")
    return {k: namespace[k] for k in keys}


def pick_device(device, dtype):
    """'' picks cuda, then mps, then cpu; dtype '' picks bfloat16 on cuda, float32 elsewhere.
    Returns (device, device type, dtype, autocast context). One line for a device this machine
    cannot use."""
    from contextlib import nullcontext

    import torch
    if not device:
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SystemExit(f"device={device!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    usable = dict(cpu=True, cuda=torch.cuda.is_available(), mps=torch.backends.mps.is_available())
    if not usable.get(dev.type) or (dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count()):
        have = [t for t, ok in usable.items() if ok]
        raise SystemExit(f"device={device!r} is not available on this machine (torch {torch.__version__} "
                         f"sees: {', '.join(have)})")
    dtype = dtype or ("bfloat16" if dev.type == "cuda" else "float32")
    if dev.type == "cuda":  # float32 products on tensor cores where they are not autocast
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = nullcontext() if dtype == "float32" else torch.autocast(dev.type, dtype=getattr(torch, dtype))
    return device, dev.type, dtype, autocast


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), for the prepare_*.py builders."""
    def error(self, message):
        raise SystemExit(f"{self.prog}: {message}")


def number(kind, interval):
    """An argparse type: an int or float in the interval, e.g. number(int, "[1, inf)")."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an int' if kind is int else 'a number'}") from None
        if not in_interval(value, interval):
            raise argparse.ArgumentTypeError(f"{text} is out of range {interval}")
        return value
    return parse
