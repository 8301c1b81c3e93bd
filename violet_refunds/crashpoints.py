"""Named crash points for the reliability tests (docs/reliability.md, Injecting faults).

A test starts a real worker with VIOLET_CRASH_POINT=<name> and VIOLET_CRASH_ONCE_FILE=<path>; the
first time the worker reaches that point it creates the file and kills itself with SIGKILL, exactly
where a real crash would hurt most (e.g. after Stripe said yes, before the database knows). Without
those variables (production) this is a dictionary lookup and nothing else.
"""

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("VIOLET_CRASH_POINT") != name:
        return
    marker = os.environ.get("VIOLET_CRASH_ONCE_FILE")
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # already crashed once: let the redelivered task finish
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
