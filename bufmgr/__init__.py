"""bufmgr: thread-safe bounded frame buffers for capture pipelines.

`FrameQueue` is the compiled class (C ring via Cython) whenever it was built;
set BUFMGR_NO_EXTENSIONS=1 (at build or import time) to use the pure-Python
twin. `IMPLEMENTATION` says which one you got: "c" or "python".
"""

import os as _os
from typing import TYPE_CHECKING

from ._errors import Empty, Full, ShutDown

if TYPE_CHECKING:
    # Type checkers see the stub's types (bufmgr/_ring.pyi: Literal policies,
    # Buffer, FrameQueue[T], @final), whichever class is picked at run time:
    # the pure twins have the same signatures (tests/test_stubs.py).
    from typing import Literal

    from ._ring import Frame, FrameQueue, FrameRing

    IMPLEMENTATION: Literal["c", "python"]
elif _os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0"):
    from ._pyframering import Frame, FrameRing
    from ._pyqueue import FrameQueue

    IMPLEMENTATION = "python"
else:
    try:
        from ._ring import Frame, FrameQueue, FrameRing
    except ImportError:  # not built (e.g. a pure install): use the twins
        from ._pyframering import Frame, FrameRing
        from ._pyqueue import FrameQueue

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "c"

__version__ = "0.1.0"
__all__ = ["FrameQueue", "FrameRing", "Frame", "ShutDown", "Full", "Empty", "IMPLEMENTATION", "__version__"]

from .coordinator import StateCoordinator  # noqa: E402
from .manager import BufferConfig, BufferManager  # noqa: E402

__all__ += ["BufferManager", "BufferConfig", "StateCoordinator"]

from .shm import SharedFrame, SharedFrameRing, SharedSlot  # noqa: E402  (Linux + compiled core)

__all__ += ["SharedFrameRing", "SharedFrame", "SharedSlot"]
