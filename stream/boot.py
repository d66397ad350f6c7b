"""The first code a node process runs: die with the supervisor, before anything else can happen.

The supervisor starts `python -m stream.boot SUPERVISOR_PID` with the process's JSON config on
stdin. PR_SET_PDEATHSIG is set here, before the runtime (numpy, ZeroMQ, torch) is even imported,
and the parent is checked once it is set: a supervisor killed in the instant between the fork and
the prctl has already handed us to another parent, which no signal would then report. So a
SIGKILLed supervisor leaves no node process behind, in its first second or later.
"""
import ctypes
import os
import signal
import sys

if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):  # the supervisor is already gone
    os._exit(1)

from stream.runner import process_main  # noqa: E402  (only now: nothing may run before the prctl)

process_main(sys.stdin.read())
