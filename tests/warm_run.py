"""
Run scripts as `python SCRIPT ARGS...` runs them, but from a process that has imported torch and
numpy once: a command line costs a fork (milliseconds) instead of an interpreter start and a
torch import (2-4 s). tests/test_bad_input.py runs some hundred command lines through it.

Read one JSON job a line on stdin: {"script", "args", "cwd", "stdout", "stderr", "timeout",
"memory"}. For each, fork a child that changes to cwd, writes its stdout and stderr to the two
files, and runs the script as __main__ with sys.argv and sys.path[0] as the interpreter sets them;
a SystemExit ends it with the interpreter's exit code and message, any other exception with a
traceback and code 1. Answer each job with its exit code (negative: killed by that signal, -14
after `timeout` seconds). `memory` caps the child's address space (bytes), so a run that allocates
without bound fails at once rather than after filling the machine.
"""
import json
import os
import resource
import runpy
import signal
import sys
import traceback

import numpy  # noqa: F401  (the slow imports, done once; the scripts import them again for free)
import torch  # noqa: F401
import torch._dynamo  # noqa: F401  (model.py's torch.compiler.disable pulls it in: 1.4 s)
import torch.distributed  # noqa: F401


def child(job):
    signal.alarm(job["timeout"])  # SIGALRM ends a run that hangs
    resource.setrlimit(resource.RLIMIT_AS, (job["memory"], job["memory"]))
    os.chdir(job["cwd"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.argv, sys.path[0] = [job["script"], *job["args"]], os.path.dirname(os.path.abspath(job["script"]))
    code = 0
    try:
        runpy.run_path(job["script"], run_name="__main__")
    except SystemExit as e:  # as the interpreter: None is 0, a number is the code, anything else is printed
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(job)
        finally:  # never back into this loop
            os._exit(1)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
