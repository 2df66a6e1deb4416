"""`ordered_map`: a function over items on a few threads, results in input order."""

import collections
import concurrent.futures
import os
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None
                ) -> Iterator[R]:
  """Yields fn(item) for each item, in order, computing up to 2 x `threads` ahead.

  For work that releases the GIL (PIL's decoders and encoders, large NumPy array
  operations). Unlike `Executor.map`, it does not submit every item at once, so a
  large folder is never held in memory. `threads` defaults to the CPU count; 1 runs
  in the caller's thread. An exception from `fn` is raised at its item.
  """
  threads = threads or os.cpu_count() or 1
  if threads == 1:
    yield from map(fn, items)
    return
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= 2 * threads:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
