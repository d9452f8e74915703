from events import EventBus


def test_publish_calls_handlers_in_order():
    bus = EventBus()
    calls = []
    bus.subscribe("saved", lambda name: calls.append(("first", name)))
    bus.subscribe("saved", lambda name: calls.append(("second", name)))
    assert bus.publish("saved", "a.txt") == 2
    assert calls == [("first", "a.txt"), ("second", "a.txt")]


def test_keyword_arguments_and_other_events():
    bus = EventBus()
    seen = []
    bus.subscribe("login", lambda user, admin=False: seen.append((user, admin)))
    assert bus.publish("login", "ada", admin=True) == 1
    assert bus.publish("logout", "ada") == 0
    assert seen == [("ada", True)]


def test_unsubscribe():
    bus = EventBus()
    calls = []
    unsubscribe = bus.subscribe("tick", lambda: calls.append(1))
    bus.publish("tick")
    unsubscribe()
    assert bus.publish("tick") == 0
    assert calls == [1]
