"""Build the compiled core unless BUFMGR_NO_EXTENSIONS=1 (msgpack-style switch).

The same switch makes `import bufmgr` use the pure-Python twin.

Without a working C compiler the build stops with a message that names
BUFMGR_NO_EXTENSIONS=1 (README, "Install"): silently installing the pure
twin instead would make every queue ~25x slower behind a warning that pip
hides on a successful build.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HEADERS = ["include/bufmgr/ring.h", "include/bufmgr/pool.h", "include/bufmgr/platform.h"]

# One line per compiled module: (name, sources, files it also depends on
# besides HEADERS). Adding an extension is adding a line here.
EXTENSIONS = [
    ("bufmgr._ring", ["bufmgr/_ring.pyx"],
     ["bufmgr/_cring.pxd", "bufmgr/_cpool.pxd", "bufmgr/_framering.pxi", "bufmgr/_compat.pxi",
      "bufmgr/_deadline.pxi", "bufmgr/_aiolane.pxi"]),
    # BufferManager's hot paths: bufmgr/_mgrcore.py compiled in Cython's pure-Python
    # mode (declarations in bufmgr/_mgrcore.pxd); the same file is the pure fallback.
    ("bufmgr._mgrcore", ["bufmgr/_mgrcore.py"], ["bufmgr/_mgrcore.pxd"]),
]
if sys.platform.startswith("linux"):
    # SharedFrameRing: robust process-shared mutexes + futexes (Linux only)
    EXTENSIONS.append(("bufmgr._shm", ["bufmgr/_shm.pyx"], ["include/bufmgr/shmring.h", "bufmgr/_cshm.pxd",
                                                           "bufmgr/_deadline.pxi"]))
# Libraries an extension links besides libc: shm_open lives in librt before glibc 2.34.
LIBRARIES = {"bufmgr._shm": ["rt"]}

NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")

HINT = """
bufmgr: could not build its C extension ({error}).
  * Install a C compiler and the Python headers (Debian/Ubuntu: apt-get install gcc python3-dev;
    Fedora: dnf install gcc python3-devel; macOS: xcode-select --install; Windows: the
    "Desktop development with C++" workload of Visual Studio Build Tools), then retry; or
  * install the pure-Python twin (same API, about 25x slower per operation):
        BUFMGR_NO_EXTENSIONS=1 pip install bufmgr
"""


class BuildExtOrExplain(build_ext):
    """build_ext whose compiler failures end with what to do about them."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - setuptools/distutils raise several types
            self._explain(e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            self._explain(e)

    @staticmethod
    def _explain(error):
        from setuptools.errors import BaseError

        if isinstance(error, BaseError) and "bufmgr: could not build" in str(error):
            raise error
        raise BaseError(HINT.format(error=f"{type(error).__name__}: {error}")) from error


def extensions():
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    if sys.platform == "win32":
        compile_args, link_args = [], []  # MSVC: SRWLOCK/CONDITION_VARIABLE, no pthreads
    else:
        compile_args, link_args = ["-O2", "-pthread"], ["-pthread"]
    exts = [
        Extension(name, sources, include_dirs=["include"], depends=HEADERS + depends,
                  libraries=LIBRARIES.get(name, []),
                  extra_compile_args=compile_args, extra_link_args=link_args)
        for name, sources, depends in EXTENSIONS
    ]
    return cythonize(exts, compiler_directives={"language_level": "3"})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtOrExplain})
