"""Token buckets in Redis, as a Lua function other scripts include: the API's rate limits
(serve/ratelimit.py) run it alone, and the add-to-cart script (storage/cart_redis.py) runs it before its
cart write, so an add takes its tokens in the same round trip as the write.

A bucket is a hash {tokens, ts}; time comes from Redis itself (TIME), so replicas with skewed clocks
share one notion of "now". Either every bucket of a call has `cost` tokens and all of them are taken,
or none is (the wait until they would have is answered).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

# take_tokens(first_key, first_arg): KEYS[first_key..] are the buckets; ARGV[first_arg] is the cost,
# then capacity and refill_per_s for each bucket. Returns 0 when the tokens were taken, else the
# seconds until they would be.
TAKE_TOKENS_LUA = """
local function take_tokens(first_key, first_arg)
  if #KEYS < first_key then return 0 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  local cost = tonumber(ARGV[first_arg])
  local levels, wait = {}, 0
  for i = first_key, #KEYS do
    local a = first_arg + 2 * (i - first_key) + 1
    local cap, rate = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local level = tonumber(state[1]) or cap
    local ts = tonumber(state[2]) or now
    level = math.min(cap, level + math.max(0, now - ts) * rate)
    levels[i] = level
    if level < cost then wait = math.max(wait, (cost - level) / rate) end
  end
  for i = first_key, #KEYS do
    local a = first_arg + 2 * (i - first_key) + 1
    local cap, rate = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local level = levels[i]
    if wait == 0 then level = level - cost end
    redis.call('HSET', KEYS[i], 'tokens', level, 'ts', now)
    redis.call('PEXPIRE', KEYS[i], math.ceil(cap / rate * 1000) + 1000)
  end
  return wait
end
"""


def bucket_key(policy: str, subject: str) -> str:
    # subjects can be emails or long strings: hash them, so keys are bounded and carry no PII
    digest = hashlib.sha256(subject.encode()).hexdigest()[:24]
    return f"rl:{policy}:{digest}"


def bucket_call(
    limits: dict, buckets: Iterable[tuple[str, str]], cost: float = 1.0
) -> tuple[list[str], list]:
    """(keys, args) for take_tokens: the (policy, subject) buckets whose policy Settings.rate_limits
    names ([capacity, refill_per_s]); policies it does not name are not limited. No keys: nothing to
    take."""
    keys, args = [], [cost]
    for policy, subject in buckets:
        spec = limits.get(policy)
        if not spec:
            continue
        keys.append(bucket_key(policy, subject))
        args += [float(spec[0]), float(spec[1])]
    return keys, args
