"""A process that imports the command line's heavy libraries once, then forks one child
per ``llm-playground`` call: each call still runs in a process of its own, with its own
argv, environment, working folder, stdin, stdout, stderr and exit status, but without
paying the seconds of ``import torch`` and ``import transformers`` again.

Protocol (one JSON object per line): the test sends ``{"args", "env", "cwd", "stdin",
"stdout", "stderr"}`` (the last three are file paths); this process answers
``{"pid": N}`` when the child starts and ``{"status": N}`` when it ends. Nothing here
runs a tensor operation before forking, so no thread pool exists yet to be broken by
the fork.
"""

from __future__ import annotations

import json
import os
import sys


def preload() -> None:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401

    import llm_playground.cli  # noqa: F401
    import llm_playground.evaluation.perplexity  # noqa: F401
    import llm_playground.generation.decoding  # noqa: F401
    import llm_playground.training.engine  # noqa: F401


def child(request: dict) -> None:
    """Become ``python -m llm_playground ARGS`` with the request's files as stdio."""
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, (path, mode) in enumerate(
        (
            (request["stdin"], os.O_RDONLY),
            (request["stdout"], os.O_WRONLY),
            (request["stderr"], os.O_WRONLY),
        )
    ):
        opened = os.open(path, mode)
        os.dup2(opened, fd)
        os.close(opened)
    # fresh text streams on the new descriptors, as a new interpreter would have
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["llm-playground", *request["args"]]
    status = 0
    try:
        runpy.run_module("llm_playground", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code
        else:  # sys.exit("message") prints the message and exits 1, as Python does
            print(code, file=sys.stderr)
            status = 1
    except BaseException:  # an uncaught exception: the traceback and status 1, as Python does
        traceback.print_exc()
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed while importing goes to stderr, not into the replies
    preload()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(request)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, wait_status = os.waitpid(pid, 0)
        replies.write(json.dumps({"status": os.waitstatus_to_exitcode(wait_status)}) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
