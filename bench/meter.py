"""Wall time inside a model's forward passes, and in named functions, for the model benchmark.

:class:`ForwardMeter` hooks modules' ``forward`` (``register_forward_pre_hook`` /
``register_forward_hook``) and adds up the wall seconds of the OUTERMOST call only, so a module
called from inside another metered one is not counted twice. Each call is kept with the number of
tokens it ran (``input_ids``' length, or the rows of a vision encoder's input): a call of more than
one token is a prefill (the shared prefix, or a request's own suffix inside ``generate``), a call
of one token is a decoding step. Unlike cProfile it adds no per-Python-call overhead, so the
Python-heavy parts outside the model are not inflated.

:class:`Stopwatch` wraps named functions (a class attribute, or a method on one instance) and adds
up their wall seconds per bucket while installed. Both are context managers that restore
everything on exit. On CUDA, the forward hooks synchronise the device so a call's time is its
kernels' time, not their launch.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    """One outermost forward: which module, how many tokens, how long, and the meter's
    :attr:`ForwardMeter.tag` when it started (what the caller was doing)."""

    module: str
    tokens: int
    seconds: float
    tag: str = ""


def _tokens(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Tokens of one call: ``input_ids``' length, else the rows of the first input (a vision
    encoder's patches)."""
    ids = kwargs.get("input_ids")
    if ids is not None:
        return int(ids.shape[-1])
    first = kwargs.get("hidden_states", args[0] if args else None)
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape else 0


@dataclass
class ForwardMeter:
    """Wall seconds of the outermost forward calls of the given modules."""

    modules: dict[str, Any]
    calls: list[Call] = field(default_factory=list)
    #: Recorded with each call that starts while it is set (e.g. ``"prefix"``).
    tag: str = ""
    _depth: int = 0
    _start: float = 0.0
    _tokens: int = 0
    _tag: str = ""
    _handles: list[Any] = field(default_factory=list)

    def _sync(self, module: Any) -> None:
        param = next(module.parameters(), None)
        if param is not None and param.device.type == "cuda":
            import torch

            torch.cuda.synchronize(param.device)

    def __enter__(self) -> ForwardMeter:
        for name, module in self.modules.items():

            def before(
                mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str = name
            ) -> None:
                if self._depth == 0:
                    self._sync(mod)
                    self._tokens = _tokens(args, kwargs)
                    self._tag = self.tag
                    self._start = time.perf_counter()
                self._depth += 1

            def after(mod: Any, args: Any, kwargs: Any, out: Any, name: str = name) -> None:
                self._depth -= 1
                if self._depth == 0:
                    self._sync(mod)
                    seconds = time.perf_counter() - self._start
                    self.calls.append(Call(name, self._tokens, seconds, self._tag))

            self._handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            self._handles.append(
                module.register_forward_hook(after, with_kwargs=True, always_call=True)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def mark(self) -> int:
        """A position in :attr:`calls`, to sum only the calls made after it."""
        return len(self.calls)

    def seconds(self, since: int = 0, *, prefill: bool | None = None) -> float:
        """Seconds of the calls since ``since``; only prefills (more than one token) or only
        decoding steps when ``prefill`` is given."""
        calls = self.calls[since:]
        if prefill is not None:
            calls = [c for c in calls if (c.tokens > 1) == prefill]
        return sum(c.seconds for c in calls)


@dataclass
class Stopwatch:
    """Seconds spent in wrapped functions, per bucket (outermost calls per bucket only)."""

    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _depth: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def wrap(self, owner: Any, attr: str, bucket: str) -> None:
        """Time every call of ``owner.attr`` (a class's function or an instance's method) into
        ``bucket`` until :meth:`restore`."""
        had_own = attr in vars(owner)
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth[bucket] += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth[bucket] -= 1
                if self._depth[bucket] == 0:
                    self.totals[bucket] += time.perf_counter() - start

        setattr(owner, attr, timed)

        def undo() -> None:
            if had_own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)

        self._undo.append(undo)

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        self.totals.clear()

    @contextmanager
    def installed(self) -> Iterator[Stopwatch]:
        try:
            yield self
        finally:
            self.restore()


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (the benchmark's summary over rounds)."""
    if not values:
        raise ValueError("no values")
    return float(statistics.median(values))
