"""bufmgr/_ring.pyi must describe what both implementations really have.

The stub is read with `ast` (no type checker needed): for every class in
it, the public members must be exactly the class's public members, and
every method's parameters (names, kinds, defaults) must match
`inspect.signature` of the compiled method (Cython binding) and of the pure
twin's. Constructors are checked against the signature line that
`embedsignature` puts in the compiled class's docstring.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

import bufmgr
from bufmgr import _pycompat, _pyframering, _pyqueue

STUB = Path(bufmgr.__file__).with_name("_ring.pyi")

PURE = {"FrameQueue": _pyqueue.FrameQueue, "FrameRing": _pyframering.FrameRing, "Frame": _pyframering.Frame,
        # what FrameQueue.mutex / .not_empty (.not_full, .all_tasks_done) / .queue are
        "_QueueLock": _pycompat.QueueLock, "_QueueCondition": _pycompat.QueueCondition,
        "_QueueView": _pycompat.QueueView}
# dunders the stub promises beyond object's own
PROTOCOL = {"__len__", "__enter__", "__exit__", "__bytes__", "__buffer__", "__release_buffer__", "__array_interface__",
            "__bool__", "__class_getitem__", "__iter__", "__contains__", "__getitem__", "__aiter__"}
# PEP 688: a C type's buffer slots show up as __buffer__/__release_buffer__
# methods from 3.12 on; before that memoryview() works without them.
BUFFER = {"__buffer__", "__release_buffer__"}


def _hidden(impl: str, name: str) -> bool:
    return impl == "c" and name in BUFFER and sys.version_info < (3, 12)


def _stub_classes() -> dict[str, dict[str, ast.AST]]:
    tree = ast.parse(STUB.read_text(), str(STUB))
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = {
                item.name: item for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_setter(item)
            }
    return classes


def _is_setter(fn: ast.FunctionDef) -> bool:
    """`@name.setter`: the property is the `@property` def of the same name."""
    return any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in fn.decorator_list)


STUB_CLASSES = _stub_classes()


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, str, object]]:
    """[(name, kind, default)] without self; default is inspect's _empty if none."""
    a = fn.args
    out = []
    positional = a.posonlyargs + a.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(a.defaults)) + [
        ast.literal_eval(d) for d in a.defaults
    ]
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = "POSITIONAL_ONLY" if i < len(a.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, default))
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL", inspect.Parameter.empty))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        out.append((arg.arg, "KEYWORD_ONLY", inspect.Parameter.empty if default is None else ast.literal_eval(default)))
    if a.kwarg:
        out.append((a.kwarg.arg, "VAR_KEYWORD", inspect.Parameter.empty))
    return out[1:] if out and out[0][0] in ("self", "cls") else out


def _real_params(sig: inspect.Signature) -> list[tuple[str, str, object]]:
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind.name, p.default) for p in params]


def _callable_as(params: list[tuple[str, str, object]]) -> list[tuple[str, str, object]]:
    """What a caller can rely on: a positional-only parameter's name is not."""
    return [(f"#{i}" if kind == "POSITIONAL_ONLY" else name, kind, default)
            for i, (name, kind, default) in enumerate(params)]


def _is_property(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


CASES = [(cls, impl) for cls in STUB_CLASSES for impl in ("python", "c")]


def _get(cls_name: str, impl: str):
    if impl == "python":
        return PURE[cls_name]
    if bufmgr.IMPLEMENTATION != "c":
        pytest.skip("compiled core not built (BUFMGR_NO_EXTENSIONS=1)")
    from bufmgr import _ring

    return getattr(_ring, cls_name)


def test_stub_covers_the_exported_classes():
    assert set(STUB_CLASSES) == set(PURE)
    for name in PURE:
        if not name.startswith("_"):
            assert getattr(bufmgr, name).__name__ == name


@pytest.mark.parametrize("cls_name,impl", CASES)
def test_public_members_match_the_stub(cls_name, impl):
    cls = _get(cls_name, impl)
    stub = STUB_CLASSES[cls_name]
    promised = {n for n in stub if (not n.startswith("_") or n in PROTOCOL) and not _hidden(impl, n)}
    real = {n for n in dir(cls) if not n.startswith("_")}
    real |= {n for n in PROTOCOL if n in stub and getattr(cls, n, None) is not None}
    assert real == promised, (sorted(real - promised), sorted(promised - real))


@pytest.mark.parametrize("cls_name,impl", CASES)
def test_method_signatures_match_the_stub(cls_name, impl):
    cls = _get(cls_name, impl)
    checked = 0
    for name, fn in STUB_CLASSES[cls_name].items():
        if name == "__init__" or _is_property(fn) or (name.startswith("__") and name not in PROTOCOL):
            continue
        if _hidden(impl, name):
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property) or type(member).__name__ == "getset_descriptor":
            pytest.fail(f"{cls_name}.{name} is a property but the stub declares a method")
        try:
            sig = inspect.signature(getattr(cls, name))
        except ValueError:  # a C slot without a text signature (e.g. __len__)
            continue
        assert _callable_as(_real_params(sig)) == _callable_as(_stub_params(fn)), (
            f"{impl} {cls_name}.{name}{sig}"
        )
        checked += 1
    assert checked >= 3 or cls_name == "Frame"


@pytest.mark.parametrize("cls_name,impl", CASES)
def test_properties_match_the_stub(cls_name, impl):
    cls = _get(cls_name, impl)
    for name, fn in STUB_CLASSES[cls_name].items():
        if _is_property(fn):
            member = inspect.getattr_static(cls, name)
            assert isinstance(member, property) or type(member).__name__ == "getset_descriptor", (
                f"{impl} {cls_name}.{name} is not a property"
            )


@pytest.mark.parametrize("cls_name", [n for n in STUB_CLASSES if n != "Frame" and not n.startswith("_")])
def test_constructor_signatures_match_the_stub(cls_name):
    expected = _stub_params(STUB_CLASSES[cls_name]["__init__"])
    assert _real_params(inspect.signature(PURE[cls_name].__init__)) == expected
    if bufmgr.IMPLEMENTATION != "c":
        pytest.skip("compiled core not built (BUFMGR_NO_EXTENSIONS=1)")
    from bufmgr import _ring

    # embedsignature: the first docstring line is "Name(params)"
    first = getattr(_ring, cls_name).__doc__.splitlines()[0]
    # read as a def (it may have keyword-only parameters after `*`)
    fn = ast.parse(f"def {first}: pass").body[0]
    assert isinstance(fn, ast.FunctionDef) and fn.name == cls_name, first
    assert _stub_params(fn) == expected, first
