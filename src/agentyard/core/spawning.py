"""One lock between starting processes from threads and writing scripts to execute.

A process started from a thread (git: :mod:`agentyard.workspace.git_process`) holds a copy
of every descriptor of the server from its fork until its exec. If one of them is a script
still open for writing, executing that script meanwhile fails with "Text file busy". So a
thread starts its process, and the server writes such a script, under this lock (each holds
it for about a millisecond).
"""

from __future__ import annotations

import threading

EXEC_WRITE_LOCK = threading.Lock()
