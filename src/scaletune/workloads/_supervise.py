"""Supervisor of one command trial: ``python _supervise.py WORKER_PID PROGRAM ARGS...``.

Started by the command workload as the leader of a new process group; runs the program in that group and
exits with its exit code. Its one job: when the worker process dies (even by SIGKILL), kill the whole group,
so no training process (nor anything it spawned: torchrun's ranks, data loaders) outlives the sweep. The
kernel tells it through PR_SET_PDEATHSIG; the program's own children never get that signal themselves.

Run by path with ``python -I -S``: standard library only, nothing of scaletune is imported.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> int:
    worker, argv = int(sys.argv[1]), sys.argv[2:]

    def kill_group(*_):
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGUSR1, kill_group)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    except (OSError, AttributeError):  # not Linux: the worker's own clean-up is all there is
        pass
    if os.getppid() != worker:  # the worker died before the line above
        kill_group()
    # The worker stops a trial by SIGTERM to the group, then SIGKILL after a grace period: the program
    # decides what SIGTERM does; the supervisor waits for it (handlers, unlike SIG_IGN, are not inherited).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    pid = os.fork()  # not subprocess: importing it would double this process's start-up time
    if pid == 0:
        try:
            os.execvp(argv[0], argv)  # caught signals are reset to their defaults by exec
        except OSError as exc:
            os.write(2, f"scaletune: cannot run {argv[0]}: {exc}\n".encode())
        os._exit(127)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])  # retried after a handler ran (PEP 475)
    return code if code >= 0 else 128 - code  # killed by signal N: exit 128 + N, as a shell reports it


if __name__ == "__main__":
    sys.exit(main())
