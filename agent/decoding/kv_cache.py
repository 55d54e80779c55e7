"""KV cache helpers: cropping across transformers versions, and the per-session prefix cache."""

from __future__ import annotations

from transformers import DynamicCache


def crop_cache(cache: DynamicCache, keep: int) -> None:
    """Cut the cache back to its first `keep` positions.

    A negative argument to `crop` means "remove this many" in every transformers version we accept.
    """
    remove = cache.get_seq_length() - keep
    if remove > 0:
        cache.crop(-remove)


class PrefixCache:
    """The KV cache of the last sequence a session ran, reused when the next prompt extends it."""

    def __init__(self) -> None:
        self.token_ids: list[int] = []
        self.cache: DynamicCache | None = None

    def reset(self) -> None:
        self.token_ids = []
        self.cache = None

    def take(self, prompt_ids: list[int]) -> tuple[DynamicCache, int]:
        """A cache holding the longest reusable prefix of prompt_ids, and that prefix's length.

        At least the last prompt token is always left to run, since its logits start the response.
        """
        if self.cache is None:
            return DynamicCache(), 0
        common = 0
        for cached, new in zip(self.token_ids, prompt_ids, strict=False):
            if cached != new:
                break
            common += 1
        common = min(common, len(prompt_ids) - 1)
        if common <= 0:
            self.reset()
            return DynamicCache(), 0
        crop_cache(self.cache, common)
        cache, self.cache, self.token_ids = self.cache, None, []
        return cache, common

    def keep(self, token_ids: list[int], cache: DynamicCache) -> None:
        self.token_ids = list(token_ids)
        self.cache = cache
