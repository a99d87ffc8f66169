"""Progress inside one image's coding, for whoever wants to show it; silent by default.

A slow single file (encoder effort: minutes; a large image: its analysis and synthesis by
squares) would otherwise show nothing until it ends. The loops that take the time say how far
they are (`stage`, `step`); a caller that wants to see it sets a listener for the duration
of a call (`listening`), as the CLI does for one input. A context variable, so threads and
other callers are not affected, and nothing here draws on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

# listener(stage, done, total): a stage begins with done == 0, then each step adds one
Listener = Callable[[str, int, int], None]
_listener: ContextVar[Listener | None] = ContextVar("aecodec_progress", default=None)
_state: ContextVar[list | None] = ContextVar("aecodec_progress_state", default=None)
T = TypeVar("T")


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener(stage, done, total)` for the coding done inside the block."""
    token, state = _listener.set(listener), _state.set(["", 0, 0])
    try:
        yield
    finally:
        _listener.reset(token)
        _state.reset(state)


def stage(name: str, total: int) -> None:
    """A stage of `total` steps begins (a no-op when nobody listens)."""
    listener, state = _listener.get(), _state.get()
    if listener is not None and state is not None:
        state[:] = [name, 0, total]
        listener(name, 0, total)


def step() -> None:
    """One step of the current stage is done."""
    listener, state = _listener.get(), _state.get()
    if listener is not None and state is not None and state[2]:
        state[1] += 1
        listener(state[0], state[1], state[2])


def counted(name: str, items: Iterable[T]) -> Iterator[T]:
    """The items as a stage of their count: each one yielded, then counted as done."""
    items = items if isinstance(items, Sequence) else list(items)
    if len(items) > 1:
        stage(name, len(items))
    for item in items:
        yield item
        if len(items) > 1:
            step()
