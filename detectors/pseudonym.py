"""Pseudonyms for numbers that must not leave the system in clear (callees, bombing victims).

A keyed BLAKE2b digest: stable for one key, so a switch holding the same key can match a
protected callee, and useless to anyone without the key. The key comes from settings
(``DIALWATCH_PSEUDONYM_KEY``); the default is for demos and tests only.
"""

from __future__ import annotations

import hashlib

PREFIX = "ps:"


def pseudonym(number: str, key: bytes) -> str:
    """``ps:`` + 20 hex digits (80 bits) naming ``number`` under ``key``."""
    digest = hashlib.blake2b(number.encode(), digest_size=10, key=key[:64]).hexdigest()
    return PREFIX + digest


def key_id(key: bytes, configured: str = "") -> str:
    """The id that names ``key`` in outputs (``DIALWATCH_PSEUDONYM_KEY_ID``), by default
    ``k`` + 8 hex digits of a keyed digest of a constant: it changes when the key changes and
    says nothing about any number."""
    if configured:
        return configured
    return "k" + hashlib.blake2b(b"dialwatch-key-id", digest_size=4, key=key[:64]).hexdigest()
