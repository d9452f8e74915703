from ratelimit import RateLimiter


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_limit_within_a_window():
    clock = FakeClock()
    limiter = RateLimiter(2, 10, clock=clock)
    assert limiter.allow() is True
    assert limiter.allow() is True
    assert limiter.allow() is False
    clock.now = 9.9
    assert limiter.allow() is False


def test_calls_expire_after_the_window():
    clock = FakeClock()
    limiter = RateLimiter(2, 10, clock=clock)
    limiter.allow()
    clock.now = 5
    limiter.allow()
    clock.now = 10
    assert limiter.allow() is True
    assert limiter.allow() is False
    clock.now = 15
    assert limiter.allow() is True


def test_refused_calls_do_not_count():
    clock = FakeClock()
    limiter = RateLimiter(1, 10, clock=clock)
    assert limiter.allow() is True
    clock.now = 5
    assert limiter.allow() is False
    clock.now = 10
    assert limiter.allow() is True
