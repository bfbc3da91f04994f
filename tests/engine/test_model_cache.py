"""The per-worker cache of built networks: bounded, least recently used first, stable keys."""

from __future__ import annotations

import functools

from torch import nn

from sparknet.engine.model_cache import NetworkCache
from sparknet.models.registry import callable_key, resolve_model


def mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))


def test_cache_keeps_at_most_capacity_networks_dropping_the_least_recent() -> None:
    cache = NetworkCache(capacity=2)
    kinds = [resolve_model(functools.partial(mlp, width)) for width in (8, 16, 32)]
    first = cache.get(kinds[0])
    cache.get(kinds[1])
    assert cache.get(kinds[0]) is first  # a hit refreshes it
    cache.get(kinds[2])
    assert cache.keys() == [kinds[0].key, kinds[2].key]
    assert cache.get(kinds[1]).module[1].out_features == 16  # rebuilt after eviction


def test_callable_keys_are_stable_and_never_an_id() -> None:
    def make() -> nn.Module:
        return mlp(8)

    assert callable_key(make) == callable_key(make)
    assert str(id(make)) not in callable_key(make)
    assert callable_key(functools.partial(mlp, 8)) == callable_key(functools.partial(mlp, 8))
    assert callable_key(functools.partial(mlp, 8)) != callable_key(functools.partial(mlp, 9))
    assert callable_key(mlp) != callable_key(make)
    assert resolve_model(make).key == callable_key(make)
