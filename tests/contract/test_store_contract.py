"""The store contract, the whole Store: an open store answers the readiness probe. Each concern has
its own file (test_store_<concern>_contract.py); every adapter must pass them unchanged
(conftest.py)."""

from __future__ import annotations


async def test_an_open_store_answers_the_readiness_probe(reopen):
    store = await reopen()
    await store.ping()  # returns: the store answers
