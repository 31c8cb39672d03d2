"""Run CPython's own multiprocessing.dummy connection tests over FrameQueue.

Usage: python tests/mp_dummy_stdlib.py c|python

multiprocessing.dummy.connection builds every Pipe/Listener/Client on
queue.Queue (``from queue import Queue``) and its Connection.poll(timeout)
sleeps on ``q.not_empty``. This script swaps that module's ``Queue`` for a
FrameQueue factory, installs the "threads" flavour of the stdlib's
_TestConnection, _TestListenerClient and _TestPoll (Lib/test/_test_multiprocessing.py,
the suite behind test_multiprocessing_*), runs them, and exits 0 only if they
all pass, at least one ran, and FrameQueues were really used. Exit 77 when
the interpreter has no ``test`` package (Debian ships it separately).
Used by tests/test_queue_compat.py; runs in its own process because the
stdlib suite sets the multiprocessing start method and checks for leftovers.
"""

import sys
import unittest


def main(impl: str) -> int:
    try:
        import test._test_multiprocessing as stdlib_tests
    except ImportError as e:
        print(f"no CPython test suite here: {e}")
        return 77
    import multiprocessing.dummy.connection as dummy_connection

    if impl == "c":
        from bufmgr._ring import FrameQueue
    else:
        from bufmgr._pyqueue import FrameQueue

    made = []

    def queue_factory(maxsize=0):
        q = FrameQueue(maxsize)
        made.append(type(q))
        return q

    dummy_connection.Queue = queue_factory  # what Pipe/Listener/Client call

    ns = {"__name__": "mp_dummy_over_framequeue"}
    try:
        stdlib_tests.install_tests_in_module_dict(ns, "spawn", only_type="threads")
    except TypeError:  # 3.10-3.11.x before only_type: installs every flavour; we pick ours
        stdlib_tests.install_tests_in_module_dict(ns, "spawn")
    wanted = ["WithThreadsTestConnection", "WithThreadsTestListenerClient", "WithThreadsTestPoll"]
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(ns[name]) for name in wanted)
    ns["setUpModule"]()
    try:
        result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    finally:
        ns["tearDownModule"]()
    print(f"FrameQueues made: {len(made)} ({set(t.__module__ for t in made)})")
    ok = result.wasSuccessful() and result.testsRun > 0 and made and set(made) == {FrameQueue}
    ran = result.testsRun - len(result.skipped)
    print(f"ran {ran} of {result.testsRun} (skipped {len(result.skipped)}): {'OK' if ok else 'FAILED'}")
    return 0 if ok and ran > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
