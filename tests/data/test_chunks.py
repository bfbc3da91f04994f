"""The one chunk format: encoded from driver arrays or dealt from batches, decoded the same."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sparknet.data.chunks import (
    ChunkLayout,
    assemble_shard,
    dealt_batch,
    encoded_payload,
    layout_of_arrays,
    row_bytes,
    shard_chunks,
)
from sparknet.data.shards import Shard


@st.composite
def shards(draw: st.DrawFn) -> Shard:
    rows = draw(st.integers(0, 40))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    width = draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        features = rng.integers(0, 256, (rows, *shape), dtype=np.uint8)
    else:
        features = rng.normal(size=(rows, *shape)).astype(np.float32)
    labels = (rng.integers(0, 9, rows).astype(np.int64) if width == 0
              else rng.normal(size=(rows, width)).astype(np.float32))
    return Shard(features, labels)


@settings(max_examples=60, deadline=None)
@given(shard=shards(), chunk_rows=st.integers(1, 16), order=st.randoms(use_true_random=False))
def test_driver_arrays_come_back_as_they_went(shard: Shard, chunk_rows: int, order) -> None:
    layout = layout_of_arrays(shard.features, shard.labels)
    chunks = shard_chunks(3, shard, layout, chunk_rows=chunk_rows, pad_to=2).to_pylist()
    assert {chunk["shard"] for chunk in chunks} == {3}
    order.shuffle(chunks)  # a shuffle delivers chunks in any order; ``first`` restores it
    back = assemble_shard(layout, chunks)
    assert back.features.dtype == shard.features.dtype
    assert back.labels.dtype == shard.labels.dtype
    np.testing.assert_array_equal(back.features, shard.features)
    np.testing.assert_array_equal(back.labels, shard.labels)
    per_row = [row_bytes(layout, c["features"], c["labels"], c["rows"])
               for c in sorted(chunks, key=lambda c: c["first"])]
    assert b"".join(b"".join(f) for f, _ in per_row) == shard.features.tobytes()
    assert b"".join(b"".join(lab) for _, lab in per_row) == shard.labels.tobytes()


@settings(max_examples=60, deadline=None)
@given(first=st.integers(0, 1000), kept=st.lists(st.integers(0, 63), unique=True, max_size=40),
       shards_count=st.integers(1, 5), chunk_rows=st.integers(1, 8))
def test_dealing_sends_input_row_g_to_shard_g_mod_k(first: int, kept: list[int],
                                                   shards_count: int, chunk_rows: int) -> None:
    kept_rows = np.array(sorted(kept), np.int64)
    layout = ChunkLayout(stored="floats", shape=(1,), label_width=0)
    values = np.arange(64, dtype=np.float32) + first  # a row's value is its input number

    def payload(rows: np.ndarray) -> tuple[bytes, bytes]:
        positions = kept_rows[rows]
        return values[positions].tobytes(), (positions + first).astype(np.int64).tobytes()

    batch = dealt_batch(num_shards=shards_count, chunk_rows=chunk_rows, first=first,
                        kept=kept_rows, report='{"counts": {}}', payload=payload).to_pylist()
    assert batch[0]["report"] and all(not chunk["report"] for chunk in batch[1:])
    for index in range(shards_count):
        shard = assemble_shard(layout, [c for c in batch if c["shard"] == index])
        mine = [int(first + k) for k in kept_rows if (first + k) % shards_count == index]
        assert shard.labels.tolist() == mine
        np.testing.assert_array_equal(shard.features[:, 0], np.array(mine, np.float32))


def test_encoded_rows_keep_their_bytes() -> None:
    blobs = [b"\x89PNG-one", b"", b"jpeg-three-bytes"]
    layout = ChunkLayout(stored="encoded", shape=(1, 2, 2), label_width=2)
    labels = np.arange(6, dtype=np.float32).reshape(3, 2)
    features, label_rows = row_bytes(layout, encoded_payload(blobs), labels.tobytes(), 3)
    assert features == blobs
    assert b"".join(label_rows) == labels.tobytes()
