"""Ids that must be unique but needn't be secret (a scan's id, a request's trace id): 32 hex
characters, a random prefix per process and a counter. Cheaper than ``uuid4`` by a trip to the
kernel's random source per id, which on the scan route is a measurable share of the request;
nothing may use them where guessing one would matter (tokens, nonces: ``secrets``)."""

from __future__ import annotations

import itertools
import os

_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _new_prefix() -> None:
    # A forked child must not repeat its parent's ids.
    global _prefix
    _prefix = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_prefix)


def unique_hex() -> str:
    return f"{_prefix}{next(_counter) & 0xFFFFFFFFFFFFFFFF:016x}"
