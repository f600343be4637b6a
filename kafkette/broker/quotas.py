"""Client quotas (KIP-13, with KIP-219's throttling): sans-IO, clock injected.

A quota applies to a (user, client-id) pair resolved from the quotas in the metadata
image with Kafka's precedence (DefaultQuotaCallback), the first entity that sets the
key winning:

    /users/u/clients/c, /users/u/clients/<default>, /users/u,
    /users/<default>/clients/c, /users/<default>/clients/<default>, /users/<default>,
    /clients/c, /clients/<default>

The entity that matched decides who shares the rate: a quota on /users/u is shared by
every client id of u; one on /clients/<default> gives each client id its own, as
Kafka's metric tags do (the default's tags name the real user / client id).

The rate is Kafka's sampled Rate: `quota.window.num` samples (default 11) of
`quota.window.size.seconds` (default 1); the rate is the sum of the samples over the
time since the oldest one started, and never over less than (num - 1) windows, so a
new client cannot burst far above its quota. When a recorded value takes the rate
over the quota, the throttle time is Kafka's formula

    (observed - quota) / quota * window length

which is how long the client must send nothing for the rate to fall back to the
quota. `record()` returns it (0 when within the quota).

Keys: producer_byte_rate (bytes of Produce requests), consumer_byte_rate (record bytes
of Fetch responses), request_percentage (handler time as a percentage of one thread,
per window). controller_mutation_rate (KIP-599) and the ip entity's
connection_creation_rate (KIP-612) are stored and described but not enforced here.
"""
from __future__ import annotations


USER, CLIENT_ID, IP = "user", "client-id", "ip"
PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
CONNECTION_CREATION_RATE = "connection_creation_rate"
ENFORCED_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE)
NOT_ENFORCED_KEYS = (CONTROLLER_MUTATION_RATE, CONNECTION_CREATION_RATE)

# At most this many (entity, key) sensors are kept; the least recently used beyond it
# are dropped (Kafka expires idle sensors after an hour), so a flood of client ids
# cannot grow the broker's memory or /metrics without bound.
MAX_SENSORS = 1000


def entity_key(components) -> tuple:
    """The canonical key of a quota entity: its (type, name or None) pairs, sorted by
    type. None is the entity type's default."""
    return tuple(sorted((t, n) for t, n in components))


def _candidates(user: str, client_id: str):
    """Kafka's precedence, each as (entity key in the image, sensor tags)."""
    u, c = (USER, user), (CLIENT_ID, client_id)
    ud, cd = (USER, None), (CLIENT_ID, None)
    yield entity_key([u, c]), (user, client_id)
    yield entity_key([u, cd]), (user, client_id)
    yield entity_key([u]), (user, "")
    yield entity_key([ud, c]), (user, client_id)
    yield entity_key([ud, cd]), (user, client_id)
    yield entity_key([ud]), (user, "")
    yield entity_key([c]), ("", client_id)
    yield entity_key([cd]), ("", client_id)


def resolve(quotas, user: str, client_id: str, key: str):
    """(quota bound, sensor tags (user, client id)) of the first entity in Kafka's
    order that sets `key`, or None."""
    for entity, tags in _candidates(user, client_id):
        values = quotas.get(entity)
        if values is not None and key in values:
            return values[key], tags
    return None


class Rate:
    """Kafka's SampledStat Rate over `num` samples of `window_ms` each."""
    __slots__ = ("num", "window_ms", "starts", "values", "current")

    def __init__(self, num: int, window_ms: int, now_ms: int):
        self.num = num
        self.window_ms = window_ms
        self.starts = [now_ms] * num
        self.values = [0.0] * num
        self.current = 0

    def record(self, value: float, now_ms: int) -> None:
        i = self.current
        if now_ms - self.starts[i] >= self.window_ms:
            i = self.current = (i + 1) % self.num
            self.starts[i] = now_ms
            self.values[i] = 0.0
        self.values[i] += value

    def _purge(self, now_ms: int) -> None:
        expire = self.num * self.window_ms
        for i in range(self.num):
            if now_ms - self.starts[i] >= expire:
                self.starts[i] = now_ms
                self.values[i] = 0.0

    def window_size_ms(self, now_ms: int) -> int:
        elapsed = now_ms - min(self.starts)
        full = elapsed // self.window_ms
        if full < self.num - 1:
            elapsed += (self.num - 1 - full) * self.window_ms
        return elapsed

    def measure(self, now_ms: int) -> float:
        """Per second."""
        self._purge(now_ms)
        return sum(self.values) / (self.window_size_ms(now_ms) / 1000.0)


class QuotaManager:
    """The sensors of one broker: (key, user tag, client tag) -> Rate, plus counts of
    throttled requests for /metrics."""

    def __init__(self, window_num: int = 11, window_size_s: int = 1):
        self.window_num = window_num
        self.window_ms = window_size_s * 1000
        self._rates: dict[tuple, Rate] = {}
        # (key, user, client id) -> resolve()'s answer, for the quotas object it was
        # computed from (the image's; a new one after every quota change).
        self._resolved: dict[tuple, tuple | None] = {}
        self._resolved_from = None
        # (key, user tag, client tag) -> [throttled requests, throttle ms in total]
        self.throttled: dict[tuple, list] = {}

    def record(self, quotas, user: str, client_id: str, key: str, value: float,
               now_ms: int) -> int:
        """Record `value` against the entity that `key`'s quota resolves to; the
        throttle time in ms (0 without a quota, or within it)."""
        if quotas is not self._resolved_from or len(self._resolved) >= MAX_SENSORS:
            self._resolved = {}
            self._resolved_from = quotas
        ck = (key, user, client_id)
        found = self._resolved.get(ck, False)
        if found is False:
            found = self._resolved[ck] = resolve(quotas, user, client_id, key)
        if found is None:
            return 0
        bound, (user_tag, client_tag) = found
        sensor = (key, user_tag, client_tag)
        rate = self._rates.pop(sensor, None)  # re-inserted last: LRU order
        if rate is None:
            rate = Rate(self.window_num, self.window_ms, now_ms)
            if len(self._rates) >= MAX_SENSORS:
                old = next(iter(self._rates))
                del self._rates[old]
                self.throttled.pop(old, None)
        self._rates[sensor] = rate
        rate.record(value, now_ms)
        observed = rate.measure(now_ms)
        if observed <= bound:
            return 0
        ms = throttle_time_ms(observed, bound, rate.window_size_ms(now_ms))
        # Capped at the whole sampled window: a client silent that long starts over.
        ms = min(ms, self.window_num * self.window_ms)
        if ms > 0:
            stats = self.throttled.get(sensor)
            if stats is None:
                stats = self.throttled[sensor] = [0, 0]
            stats[0] += 1
            stats[1] += ms
        return ms

    def rates(self, now_ms: int) -> list[tuple[tuple, float]]:
        """(sensor, current rate per second), for /metrics."""
        return [(s, r.measure(now_ms)) for s, r in list(self._rates.items())]


def throttle_time_ms(observed: float, bound: float, window_ms: float) -> int:
    """Kafka's QuotaUtils.throttleTime: how long the client must stay silent for the
    rate measured over the window to fall back to the bound."""
    if bound <= 0:
        return int(window_ms)
    return max(0, round((observed - bound) / bound * window_ms))


