"""Build the compiled core unless BUFMGR_NO_EXTENSIONS=1 (msgpack-style switch).

The same switch makes `import bufmgr` use the pure-Python twin.
"""

import os
import sys

from setuptools import Extension, setup


def extensions():
    if os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    from Cython.Build import cythonize

    if sys.platform == "win32":
        compile_args, link_args = [], []  # MSVC: SRWLOCK/CONDITION_VARIABLE, no pthreads
    else:
        compile_args, link_args = ["-O2", "-pthread"], ["-pthread"]
    ext = Extension(
        "bufmgr._ring",
        ["bufmgr/_ring.pyx"],
        include_dirs=["include"],
        depends=["include/bufmgr/ring.h", "include/bufmgr/pool.h", "include/bufmgr/platform.h", "bufmgr/_cring.pxd", "bufmgr/_cpool.pxd", "bufmgr/_framering.pxi", "bufmgr/_mgrcore.pxi"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    exts = [ext]
    if sys.platform.startswith("linux"):
        # SharedFrameRing: robust process-shared mutexes + futexes (Linux only)
        exts.append(Extension(
            "bufmgr._shm",
            ["bufmgr/_shm.pyx"],
            include_dirs=["include"],
            depends=["include/bufmgr/shmring.h", "include/bufmgr/pool.h", "include/bufmgr/ring.h", "include/bufmgr/platform.h", "bufmgr/_cshm.pxd"],
            extra_compile_args=compile_args,
            extra_link_args=link_args + ["-lrt"],
        ))
    return cythonize(exts, compiler_directives={"language_level": "3"})


setup(ext_modules=extensions())
