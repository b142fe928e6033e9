"""ResponseCache and cache_key: persistence across instances, hit/miss counting, key stability."""

from __future__ import annotations

from r2_write.llm.cache import ResponseCache, cache_key


def test_cache_key_is_order_independent_and_sensitive():
    conv = [{"role": "user", "content": "hi"}]
    assert cache_key(model="m", messages=conv) == cache_key(messages=conv, model="m")
    assert cache_key(model="m", messages=conv) != cache_key(model="m2", messages=conv)
    assert cache_key(model="m", messages=conv, sampling={"seed": 0}) != cache_key(model="m", messages=conv, sampling={"seed": 1})


def test_put_get_counts_hits_and_misses(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many({"a": {"text": "A"}, "b": [1, 2]})
    assert cache.get_many(["a", "b", "c"]) == {"a": {"text": "A"}, "b": [1, 2]}
    assert (cache.hits, cache.misses) == (2, 1)
    assert len(cache) == 2
    cache.put_many({})  # no-op
    cache.put_many({"a": {"text": "A2"}})  # replace
    assert cache.get_many(["a"]) == {"a": {"text": "A2"}}
    assert len(cache) == 2
    cache.close()


def test_persists_across_instances(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"  # parent folders are created
    first = ResponseCache(path)
    first.put_many({"k": {"text": "é 中文"}})
    first.close()
    second = ResponseCache(path)
    assert second.get_many(["k", "missing"]) == {"k": {"text": "é 中文"}}
    assert (second.hits, second.misses) == (1, 1)
    second.close()


def test_many_keys_are_chunked(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many({str(i): i for i in range(1203)})
    got = cache.get_many([str(i) for i in range(1210)])
    assert len(got) == 1203 and got["1202"] == 1202
    assert cache.misses == 7
    cache.close()
