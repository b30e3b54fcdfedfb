"""The compiled code of every module km and krun import as they start, in one file.

An ordinary import looks each module up on sys.path, stats its source, opens and reads
its .pyc: about 80 µs a module, 5-6 ms of km's start for its ~100 modules. From this
file they come with one read and one marshal.loads, served by a finder placed first on
sys.meta_path (the launchers install it; scripts/setup.sh builds the file).

Each entry keeps its source's path, mtime and size: a module whose source changed since
(a developer's edit) is not served from here but imported as usual, so the file is only
ever a cache. It lives beside the interpreter's own files, in the virtualenv, and is
trusted as its .pyc files are. Only the standard library and kontain are taken.

    python -m kontain.startup_bundle VENV     build VENV/kontain-startup.bundle
"""

from __future__ import annotations

import marshal
import os
import sys
from _frozen_importlib import ModuleSpec  # (loaded with the interpreter: costs nothing)
from _frozen_importlib_external import MAGIC_NUMBER

FILENAME = "kontain-startup.bundle"

#: What km and krun import before their payload runs: importing these pulls in the rest.
ROOTS = ("kontain.cli.km", "kontain.cli.krun", "kontain.oci.init", "kontain.oci.enter",
         "kontain.monitor.devices", "kontain.monitor.exits", "kontain.monitor.launch",
         "kontain.monitor.vdso", "kontain.monitor.syscall_filter", "kontain.syscalls.registry")


class BundleFinder:
    """Serves modules from the bundle's code while their sources are unchanged."""

    def __init__(self, index: dict, blobs: memoryview) -> None:
        #: name -> (source path, is a package, source mtime_ns, source size, offset,
        #: length): where in blobs the module's marshalled code is. The file is mapped,
        #: not read: only the pages of modules imported are touched (a first touch of
        #: host memory is not cheap on these machines), and nothing is copied.
        self._index = index
        self._blobs = blobs

    def find_spec(self, name: str, path: object = None, target: object = None):
        entry = self._index.get(name)
        if entry is None:
            return None
        source, package, mtime_ns, size = entry[:4]
        try:
            st = os.stat(source)
        except OSError:
            return None
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            del self._index[name]  # edited since: the ordinary finders take it
            return None
        spec = ModuleSpec(name, self, origin=source, is_package=package)
        spec.has_location = True  # __file__ is the source's path, as usual
        if package:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: object) -> None:
        offset, length = self._index.pop(module.__spec__.name)[4:]
        exec(marshal.loads(self._blobs[offset:offset + length]), module.__dict__)


def _map(path: str) -> memoryview:
    """The file, mapped read-only, with no descriptor left open: the mmap module keeps
    a dup of the file's descriptor, at a low number the payload would then find taken
    (km's own descriptors live high, and it makes them so itself)."""
    import ctypes  # (km and krun import it anyway)

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if not size:
            raise ValueError("an empty bundle")
        mmap = ctypes.CDLL(None, use_errno=True).mmap
        mmap.restype = ctypes.c_void_p
        mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                         ctypes.c_int, ctypes.c_long]
        address = mmap(None, size, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
    finally:
        os.close(fd)
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B")


def install(venv: str) -> bool:
    """Put the bundle of venv first on sys.meta_path; False if there is none usable."""
    try:
        blobs = _map(os.path.join(venv, FILENAME))
    except (OSError, ValueError):
        return False
    header = len(MAGIC_NUMBER) + 8
    if blobs[:len(MAGIC_NUMBER)] != MAGIC_NUMBER:  # another Python's code
        return False
    size = int.from_bytes(blobs[len(MAGIC_NUMBER):header], "little")
    try:
        kontain_dir, stdlib_dir, index = marshal.loads(blobs[header:header + size])
    except (EOFError, ValueError, TypeError):
        return False
    # Only for this kontain and this Python's library: another checkout earlier on
    # sys.path, or another interpreter, is not what the bundle holds.
    if kontain_dir != os.path.dirname(os.path.realpath(__file__)) \
            or stdlib_dir != os.path.dirname(os.__file__):
        return False
    sys.meta_path.insert(0, BundleFinder(index, blobs[header + size:]))
    return True


def build(venv: str, roots: tuple[str, ...] = ROOTS,
          directories: tuple[str, ...] | None = None) -> int:
    """Write venv's bundle of the modules imported so far, and by the roots, whose
    sources lie in directories (the standard library's and kontain's); returns how
    many it holds."""
    import importlib

    for root in roots:
        importlib.import_module(root)
    if directories is None:
        directories = (os.path.dirname(os.__file__), os.path.dirname(__file__))
    trusted = [os.path.realpath(d) + os.sep for d in directories]
    index, blobs = {}, bytearray()
    for name, module in sorted(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        source = getattr(spec, "origin", None)
        if not isinstance(source, str) or not source.endswith(".py"):
            continue  # built-in, frozen, an extension module
        if not _inside(os.path.realpath(source), trusted):
            continue
        with open(source, "rb") as f:
            text = f.read()
        st = os.stat(source)
        code = marshal.dumps(compile(text, source, "exec", dont_inherit=True))
        package = spec.submodule_search_locations is not None
        index[name] = (source, package, st.st_mtime_ns, st.st_size, len(blobs), len(code))
        blobs += code
    table = marshal.dumps((os.path.dirname(os.path.realpath(__file__)),
                           os.path.dirname(os.__file__), index))
    path = os.path.join(venv, FILENAME)
    temporary = path + ".new"
    with open(temporary, "wb") as f:
        f.write(MAGIC_NUMBER + len(table).to_bytes(8, "little") + table + blobs)
    os.replace(temporary, path)
    return len(index)


def _inside(path: str, directories: list[str]) -> bool:
    """Whether path lies in one of directories, and not in a site-packages below it
    (the standard library's directory holds the installed third-party packages)."""
    for directory in directories:
        if path.startswith(directory):
            return "site-packages" not in path[len(directory):].split(os.sep)
    return False


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m kontain.startup_bundle VENV")
    print(f"{build(sys.argv[1])} modules in {os.path.join(sys.argv[1], FILENAME)}")
