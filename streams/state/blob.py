"""The blob codec of a subject's state: what ``Store`` keeps per subject, as bytes.

The window part is MessagePack of ``[newest_ms, short, long, seen, ring, last_other, peers]``;
bucket indices relative to the newest bucket, seen times relative to ``newest_ms`` and the
16-bit ring packed as bytes, so small numbers take one or two bytes (README "Redis keys").
Window blobs written as JSON by earlier versions are still read. The episodes part is JSON.
An empty blob means nothing left to keep (the store deletes the key).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import orjson

from detectors.snapshot import N_FEATURES
from streams.state.base import Episode, NumberState

JSON_ARRAY = ord("[")  # the first byte of a window blob in the earlier JSON format


def windows_blob(state: NumberState) -> bytes:
    """The window part of ``state``, stored per subject; empty means nothing left to keep."""
    if not state.short and not state.long and not state.seen:
        return b""
    newest = state.newest_ms
    doc: list[object] = [
        newest,
        _relative_vectors(state.short),
        _relative_vectors(state.long),
        [x for h, t in state.seen.items() for x in (h, newest - t)],
    ]
    if state.ring or state.peers:
        doc += [struct.pack(f"<{len(state.ring)}H", *state.ring), state.last_other]
    if state.peers:
        doc.append(state.peers)
    return bytes(msgpack.packb(doc))


def episodes_blob(state: NumberState) -> bytes:
    """The open episodes of ``state``; empty when none is open."""
    if not state.episodes:
        return b""
    return orjson.dumps({d: [e.severity, e.opened_ms] for d, e in state.episodes.items()})


def from_blobs(windows: bytes | None, episodes: bytes | None) -> NumberState:
    """A subject's state from its stored blobs (None or empty: nothing stored)."""
    state = NumberState()
    if windows and windows[0] != JSON_ARRAY:
        doc = msgpack.unpackb(windows)
        newest = state.newest_ms = doc[0]
        state.short = _absolute_vectors(doc[1])
        state.long = _absolute_vectors(doc[2])
        it = iter(doc[3])
        state.seen = {h: newest - d for h, d in zip(it, it, strict=True)}
        if len(doc) > 4:
            ring: bytes = doc[4]
            state.ring = list(struct.unpack(f"<{len(ring) // 2}H", ring))
            state.last_other = doc[5]
        if len(doc) > 6:
            state.peers = doc[6]
    elif windows:  # the JSON format of earlier versions
        doc = orjson.loads(windows)
        state.newest_ms = doc[0]
        state.short = _unflat_vectors(doc[1])
        state.long = _unflat_vectors(doc[2])
        state.seen = _unflat(doc[3])
        if len(doc) > 4:
            state.ring, state.last_other = doc[4], doc[5]
        if len(doc) > 6:
            state.peers = doc[6]
    if episodes:
        state.episodes = {
            d: Episode(sev, opened) for d, (sev, opened) in orjson.loads(episodes).items()
        }
    return state


def _trimmed(v: list[int]) -> int | list[int]:
    """A feature vector without its trailing zeros; a bare count when only calls remain."""
    end = len(v)
    while end > 1 and v[end - 1] == 0:
        end -= 1
    return v[0] if end == 1 else v[:end]


def _relative_vectors(d: dict[int, list[int]]) -> list[object]:
    """``[newest bucket, newest - bucket, vector, ...]``; [] when there are no buckets."""
    if not d:
        return []
    ref = max(d)
    out: list[object] = [ref]
    for k, v in d.items():
        out.append(ref - k)
        out.append(_trimmed(v))
    return out


def _absolute_vectors(items: list[Any]) -> dict[int, list[int]]:
    """Inverse of _relative_vectors."""
    if not items:
        return {}
    ref = items[0]
    it = iter(items[1:])
    return _unflat_vectors([x for delta, v in zip(it, it, strict=True) for x in (ref - delta, v)])


def _unflat_vectors(items: list[object]) -> dict[int, list[int]]:
    """``[bucket, vector or count, ...]`` to buckets; a bare count (also the blob format before
    features) is a bucket of calls only."""
    out: dict[int, list[int]] = {}
    it = iter(items)
    for k, v in zip(it, it, strict=True):
        vector = [v] if isinstance(v, int) else list(v)  # type: ignore[call-overload]
        vector += [0] * (N_FEATURES - len(vector))
        out[k] = vector  # type: ignore[index]
    return out


def _unflat(items: list[int]) -> dict[int, int]:
    it = iter(items)
    return dict(zip(it, it, strict=True))
