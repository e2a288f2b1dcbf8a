"""How many threads one CPU-engine call may use, and the pool they run on.

The CPU engine splits one large image into row bands and filters them on a thread pool
(OpenCV and the compiled median release the GIL). How many threads a call uses:

1. inside :func:`limit_threads` (this thread or task only): that number;
2. else the environment variable ``GPUENHANCE_NUM_THREADS`` (a positive integer);
3. else the cores this process may run on (``os.sched_getaffinity``, else ``os.cpu_count``).

A caller that is already parallel across images (the batch file runner, a user's own thread
pool, a Dask worker) should run each image's work inside ``limit_threads(1)`` so the engine
does not start band threads on top of its own::

    from gpuenhance._threads import limit_threads

    def work(img):                      # runs on one of the runner's threads
        with limit_threads(1):
            return pipeline(img)

The setting is a :class:`contextvars.ContextVar`: it holds for the thread (or asyncio task)
that entered the ``with`` block and not for others. Band tasks themselves run with a limit of
1, so nested calls never start more threads.

OpenCV's own threads (``cv2.setNumThreads``, process-wide) are left as they are: the engine
bands only operations that OpenCV runs on one thread (medianBlur) and its NumPy paths, and
leaves OpenCV's threaded ones (GaussianBlur, LUT) to OpenCV.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

__all__ = ["ENV_VAR", "limit_threads", "num_threads", "run_parallel", "system_threads"]

#: Environment variable that caps the threads of one CPU-engine call.
ENV_VAR = "GPUENHANCE_NUM_THREADS"

_limit: contextvars.ContextVar[int | None] = contextvars.ContextVar("gpuenhance_threads",
                                                                    default=None)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive integer; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def system_threads() -> int:
    """Threads a call may use when nothing limits it: the environment setting, else the cores.

    Examples
    --------
    >>> system_threads() >= 1
    True
    """
    text = os.environ.get(ENV_VAR, "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{ENV_VAR} must be a positive integer; got {text!r}")
        return n
    return _cores()


@functools.lru_cache(maxsize=1)
def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def num_threads() -> int:
    """Threads a CPU-engine call made from here may use (see the module docstring).

    Examples
    --------
    >>> with limit_threads(1):
    ...     num_threads()
    1
    """
    n = _limit.get()
    return n if n is not None else system_threads()


@contextlib.contextmanager
def limit_threads(n: int):
    """Run CPU-engine calls made by this thread (or task) on *n* threads inside the block.

    Parameters
    ----------
    n : int
        Positive thread count; 1 runs every call on the calling thread alone. Taken as given,
        also above the core count (tests use that to force bands on small machines).

    Examples
    --------
    >>> with limit_threads(2):
    ...     num_threads() <= 2
    True
    """
    n = _positive_int(n, "n")
    token = _limit.set(n)
    try:
        yield n
    finally:
        _limit.reset(token)


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < size:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="gpuenhance-band")
            _pool_size = size
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _forget_pool() -> None:  # a forked child has the parent's pool object but not its threads
    global _pool, _pool_size
    _pool, _pool_size = None, 0
    _cores.cache_clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run_parallel(fn: Callable, items: Sequence | Iterable, threads: int | None = None) -> list:
    """``[fn(item) for item in items]``, on up to *threads* threads (default: num_threads()).

    The calling thread and ``threads - 1`` pool tasks take the next unclaimed item until none
    is left, so a thread the OS keeps waiting (a machine shared with other work) leaves its
    share to the others: the call is never much slower than the calling thread alone. Pool
    tasks that had not started by then are cancelled. With one thread, or one item,
    everything runs on the calling thread. The first exception raised by a task is raised
    here after every running task has finished; no item is started after it.

    Examples
    --------
    >>> run_parallel(lambda x: x * x, [1, 2, 3])
    [1, 4, 9]
    """
    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    n = num_threads() if threads is None else threads
    if n <= 1:
        return [fn(item) for item in items]
    m = min(n, len(items))
    pool = _executor(m - 1)
    results: list = [None] * len(items)
    errors: list = []
    claim = _Claims(len(items))

    def drain():
        token = _limit.set(1)  # no nested band threads
        try:
            while (i := claim.next()) is not None:
                try:
                    results[i] = fn(items[i])
                except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                    errors.append(exc)
                    claim.stop()
        finally:
            _limit.reset(token)

    futures = [pool.submit(drain) for _ in range(m - 1)]
    drain()
    for fut in futures:  # wait for the running ones: no task may still write into arrays
        if not fut.cancel():
            fut.result()
    if errors:
        raise errors[0]
    return results


class _Claims:
    """Hands out the indices ``0 .. n - 1`` once each, across threads."""

    def __init__(self, n: int):
        self._next = 0
        self._n = n
        self._lock = threading.Lock()

    def next(self) -> int | None:
        with self._lock:
            i = self._next
            if i >= self._n:
                return None
            self._next = i + 1
            return i

    def stop(self) -> None:
        with self._lock:
            self._n = 0
