"""Message templates render at a bounded cost: no template, however hostile, can freeze the process.

Jinja's sandbox stops templates from reaching Python's internals, but not from asking for a lot of work:
``{{ 7**10000000 }}`` is a 28-million-digit number, ``{{ 'a' * 10**9 }}`` a gigabyte, and two nested loops over a
long string a billion steps. :class:`BoundedSandbox` checks every place where a template can make work or memory:

- arithmetic (``**``, ``*``, ``+``, ``//``, ``%``) is intercepted: numbers stay under :data:`MAX_INT_BITS`, text
  and lists under :data:`MAX_SIZE`, and printf formats may not ask for huge widths;
- ``~`` (concatenation), filters and method calls (``'a'.ljust(n)``, ``'x'|center(n)``, ``(1).to_bytes(n)``) are
  checked before they run, and what they return is measured;
- every loop step, call and piece of output is charged to a :class:`RenderBudget`: a time limit, a limit on the
  output and a limit on everything built along the way.

Going over any limit raises :class:`TemplateTooCostly`, whose message says what was too much; the template editor
shows it as a problem with the template. The budget is opened with :func:`bounded` around a render; a check made
outside one still refuses oversized values.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

#: the longest text or list a template may build (characters or items); a whole message is far shorter
MAX_SIZE = 100_000
#: the most a template may write (characters) in one render
MAX_OUTPUT = 200_000
#: the most a template may build along the way in one render (characters or items, summed)
MAX_BUILT = 2_000_000
#: the largest whole number a template may compute, in bits (about 300 decimal digits)
MAX_INT_BITS = 1024
#: the largest exponent of a fractional power, and the widest printf field
MAX_EXPONENT = 1024
MAX_FORMAT_WIDTH = 1000
#: the longest source a template may have (each of subject, body and HTML)
MAX_SOURCE = 65_536
#: seconds one render may take, and one validation (every sample context) in all
RENDER_SECONDS = 0.25
VALIDATION_SECONDS = 1.0


class TemplateTooCostly(SecurityError):
    """A template asked for more work or memory than a message may take. ``str(exc)`` says what, in words."""


class RenderBudget:
    """What one render may still spend: time (a deadline on the monotonic clock), output and things built."""

    __slots__ = ("deadline", "output", "built", "steps")

    def __init__(self, seconds: float, deadline: float | None = None) -> None:
        mine = time.monotonic() + seconds
        self.deadline = mine if deadline is None else min(mine, deadline)
        self.output = 0
        self.built = 0
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps & 63 == 0 and time.monotonic() > self.deadline:
            raise TemplateTooCostly("the template takes too long to render (a loop or a computation is too big)")

    def spend_output(self, size: int) -> None:
        self.output += size
        if self.output > MAX_OUTPUT:
            raise TemplateTooCostly(f"the template writes more than {MAX_OUTPUT:,} characters")
        self.tick()

    def spend_built(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT:
            raise TemplateTooCostly(f"the template builds more than {MAX_BUILT:,} characters of text along the way")
        self.tick()


_CURRENT: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("recoup_render_budget", default=None)


@contextmanager
def bounded(seconds: float = RENDER_SECONDS) -> Iterator[RenderBudget]:
    """A budget for the renders inside the block: its own output and build limits, and ``seconds`` of time (never
    past the deadline of a budget already open around it)."""
    outer = _CURRENT.get()
    budget = RenderBudget(seconds, outer.deadline if outer is not None else None)
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def check_source(source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise TemplateTooCostly(f"the template is longer than {MAX_SOURCE:,} characters")


# -- sizes -----------------------------------------------------------------------------------------------------
def _size(value: Any) -> int:
    """How big a value is for the budget: characters of text, items of a collection, else 1."""
    if isinstance(value, str | bytes | bytearray | list | tuple | dict | set | frozenset):
        return len(value)
    return 1


def _built(size: int, what: str = "text") -> None:
    if size > MAX_SIZE:
        raise TemplateTooCostly(f"the template builds {what} longer than {MAX_SIZE:,} (asked for {size:,})")
    budget = _CURRENT.get()
    if budget is not None:
        budget.spend_built(size)


def _tick() -> None:
    budget = _CURRENT.get()
    if budget is not None:
        budget.tick()


def _whole(value: Any, default: int) -> int:
    """An argument that sets a size, as the callee will read it (a non-number fails there, not here)."""
    if value is None:
        return default
    return value if isinstance(value, int) else default


def _int_bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and _int_bits(value) > MAX_INT_BITS:
        raise TemplateTooCostly(f"the template computes a number larger than {MAX_INT_BITS} bits")
    return value


_SEQUENCES = (str, bytes, list, tuple)
#: a printf field (``%10s``, ``%-*d``, ``%.500f``) or a format spec (``{:>999}``, ``{0:.{1}f}``)
_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_FORMAT_FIELD = re.compile(r"\{[^{}]*:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_DIGITS = re.compile(r"\d+")


def _check_printf(fmt: str) -> None:
    for match in _PRINTF_FIELD.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part and int(part) > MAX_FORMAT_WIDTH):
                raise TemplateTooCostly(f"a format field wider than {MAX_FORMAT_WIDTH} is not allowed")


def _check_format_spec(fmt: str) -> None:
    for match in _FORMAT_FIELD.finditer(fmt):
        spec = match.group(1)
        if "{" in spec or any(int(d) > MAX_FORMAT_WIDTH for d in _DIGITS.findall(spec)):
            raise TemplateTooCostly(f"a format field wider than {MAX_FORMAT_WIDTH} is not allowed")


# -- operators ---------------------------------------------------------------------------------------------------
def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse, before computing it, a result too big to hold or too slow to compute."""
    if operator == "**":
        if isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and right * max(_int_bits(left) - 1, 1) > MAX_INT_BITS:
                raise TemplateTooCostly(f"the template computes a number larger than {MAX_INT_BITS} bits")
        elif isinstance(right, int | float | Decimal) and not isinstance(right, bool):
            if abs(right) > MAX_EXPONENT:
                raise TemplateTooCostly(f"an exponent larger than {MAX_EXPONENT} is not allowed")
    elif operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(times, int):
                _built(len(seq) * max(times, 0), "text or a list")
                return
        if isinstance(left, int) and isinstance(right, int) and _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
            raise TemplateTooCostly(f"the template computes a number larger than {MAX_INT_BITS} bits")
    elif operator == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _built(len(left) + len(right), "text or a list")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)
        _built(len(left) + sum(_size(v) for v in (right if isinstance(right, tuple) else (right,))))


def _estimate_join(items: Any, separator: str) -> int:
    if not isinstance(items, list | tuple | str | dict | set | frozenset):
        return 0  # an iterator, measured when it is spent
    total = len(separator) * max(len(items) - 1, 0)
    for item in items:
        total += len(item) if isinstance(item, str) else 24
        if total > MAX_SIZE:
            break
    return total


def _estimate_replace(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(text, str) or not isinstance(old, str) or not isinstance(new, str):
        return 0
    hits = (len(text) + 1) if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(len(new) - len(old), 0)


# -- calls (methods of text, numbers, ...) -------------------------------------------------------------------------
def _check_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Methods of builtin types whose cost is set by an argument: estimate what they would build."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    builtin_value = type(owner).__module__ == "builtins" or isinstance(owner, str)
    if owner is None or isinstance(owner, type) or not builtin_value:
        return  # a macro, a loop's recursion, one of ours: measured by what it writes and returns
    arguments = list(args) + list(kwargs.values())
    for value in arguments:
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > MAX_SIZE:
            raise TemplateTooCostly(f"a number this large ({value:.3g}) is not allowed as an argument to {name}()")
    if isinstance(owner, str):
        if name in ("ljust", "rjust", "center", "zfill") and args:
            _built(max(len(owner), _whole(args[0], 0)))
        elif name == "expandtabs":
            tab = _whole(args[0] if args else kwargs.get("tabsize"), 8)
            _built(len(owner) + owner.count("\t") * max(tab, 0))
        elif name == "replace" and len(args) >= 2:
            _built(_estimate_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1))
        elif name == "join" and args:
            _built(_estimate_join(args[0], owner))
        elif name in ("translate", "maketrans"):
            raise TemplateTooCostly(f"{name}() is not available in templates")


# -- filters -------------------------------------------------------------------------------------------------------
def _check_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    value = args[0] if args else None
    rest = args[1:]
    if name == "center":
        _built(max(_size(value), _whole(rest[0] if rest else kwargs.get("width"), 80)))
    elif name == "indent":
        width = rest[0] if rest else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else _whole(width, 4)
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        _built(_size(value) + lines * max(per_line, 0))
    elif name == "format":
        if isinstance(value, str):
            _check_printf(value)
    elif name == "replace" and len(rest) >= 2:
        _built(_estimate_replace(value, rest[0], rest[1], rest[2] if len(rest) > 2 else kwargs.get("count", -1)))
    elif name == "join":
        separator = rest[0] if rest else kwargs.get("d", "")
        _built(_estimate_join(value, separator if isinstance(separator, str) else ""))
    elif name in ("batch", "slice"):
        count = rest[0] if rest else kwargs.get("linecount" if name == "batch" else "slices", 1)
        if isinstance(count, int) and count > MAX_SIZE:
            raise TemplateTooCostly(f"{name} into {count:,} parts is not allowed")
    elif name == "wordwrap":
        width = rest[0] if rest else kwargs.get("width", 79)
        if isinstance(width, int) and width < 1:
            raise TemplateTooCostly("wordwrap needs a width of at least 1")
        wrap = rest[3] if len(rest) > 3 else kwargs.get("wrapstring") or "\n"
        if isinstance(value, str) and isinstance(width, int):
            _built(len(value) + (len(value) // width + 1) * len(str(wrap)))
    elif name == "truncate":
        end = rest[2] if len(rest) > 2 else kwargs.get("end", "...")
        _built(_size(value) + _size(end))
    elif name in ("round", "int", "float", "filesizeformat"):
        for v in rest:
            if isinstance(v, int) and abs(v) > MAX_EXPONENT:
                raise TemplateTooCostly(f"{name} with an argument of {v:,} is not allowed")


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` checked before it runs and measured after. Jinja's ``pass_context`` and friends are attributes of
    the function, which ``functools.wraps`` copies."""

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _tick()
        plain = args[1:] if getattr(func, "jinja_pass_arg", None) is not None else args
        _check_filter(name, plain, kwargs)
        result = func(*args, **kwargs)
        _check_int(result)
        if isinstance(result, str | list | tuple | dict | bytes):
            _built(len(result))
        return result

    return checked


def _bounded_iter(iterable: Any) -> Iterator[Any]:
    """A loop's items, each step charged to the budget (a loop that writes nothing is still bounded in time)."""
    for item in iterable:
        _tick()
        yield item


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every piece of output, every ``~`` and every loop routed through the budget."""

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        return f"environment.spend_output({super()._output_const_repr(group)})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.spend_output(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("), ")
        if frame.eval_ctx.volatile:
            self.write("context.eval_ctx.autoescape")
        else:
            self.write("True" if frame.eval_ctx.autoescape else "False")
        self.write(")")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox every message template is compiled in (see the module's documentation)."""

    intercepted_binops = frozenset({"**", "*", "+", "//", "%"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        for loop in list(source.find_all(nodes.For)):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [loop.iter], [], None, None,
                                   lineno=loop.lineno)
        return super()._generate(source, name, filename, defer_init)

    def compile(self, source: Any, name: str | None = None, filename: str | None = None, raw: bool = False,
                defer_init: bool = False) -> Any:
        if isinstance(source, str):
            check_source(source)
        try:
            return super().compile(source, name, filename, raw, defer_init)
        except (SyntaxError, RecursionError):
            # Python's own limits on the code Jinja generates (about 20 nested blocks, or expressions nested a few
            # hundred deep): said as a problem with the template, not raised as an error of ours
            raise TemplateTooCostly("the template nests blocks or expressions too deeply") from None

    # called from compiled templates -------------------------------------------------------------------------------
    @staticmethod
    def bounded_iter(iterable: Any) -> Iterator[Any]:
        return _bounded_iter(iterable)

    @staticmethod
    def spend_output(text: str) -> str:
        budget = _CURRENT.get()
        if budget is not None:
            budget.spend_output(len(text))
        elif len(text) > MAX_OUTPUT:
            raise TemplateTooCostly(f"the template writes more than {MAX_OUTPUT:,} characters")
        return text

    @staticmethod
    def checked_concat(parts: tuple[Any, ...], autoescape: bool) -> str:
        texts = [p if isinstance(p, str) else str(p) for p in parts]
        _built(sum(len(t) for t in texts))
        if autoescape:
            return Markup("").join(parts)
        return "".join(texts)

    def wrap_str_format(self, value: Any) -> Any:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_format_spec(owner)
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _check_int(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        _check_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _check_int(result)
        if isinstance(result, str | list | tuple | dict | bytes):
            _built(len(result))
        return result

