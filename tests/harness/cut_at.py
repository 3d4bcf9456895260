"""Run the `hpo` command line on a network node of the test's own (tests.harness.netns), and let
the test cut the node's network at one chosen moment.

    python -m tests.harness.cut_at NETNS PATTERN N SIGNAL_DIR hpo-arguments...

The process joins network namespace NETNS first. At the moment (tests.harness.freeze_at's PATTERN
and N: right after the N-th matching statement inside a transaction, or `-` for the N-th time a
connection went back to the pool) the thread that reached it creates SIGNAL_DIR/reached and waits
until the test has cut the network (SIGNAL_DIR/cut exists); then it goes on, and its next request
or reply is lost.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.harness import freeze_at, netns

WAIT_FOR_CUT_S = 60.0


def _hand_over(signals: Path) -> None:
    (signals / "reached").touch()
    deadline = time.monotonic() + WAIT_FOR_CUT_S
    while not (signals / "cut").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


if __name__ == "__main__":
    namespace, pattern, occurrence, folder, *arguments = sys.argv[1:]
    netns.enter(namespace)
    signals = Path(folder)
    freeze_at.install(pattern, int(occurrence), action=lambda: _hand_over(signals))
    from hpo.cli import main

    sys.exit(main(arguments))
