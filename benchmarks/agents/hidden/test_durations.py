import pytest
from durations import format_duration, parse_duration


def test_parse():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45s") == 45
    assert parse_duration("2h") == 7200
    assert parse_duration("1h2m3s") == 3723
    assert parse_duration("90m") == 5400


def test_parse_rejects_other_text():
    for bad in ("", "10", "1x", "m5", "1s1h", "h"):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_duration(bad)


def test_format():
    assert format_duration(5400) == "1h30m"
    assert format_duration(3723) == "1h2m3s"
    assert format_duration(45) == "45s"
    assert format_duration(60) == "1m"
    assert format_duration(0) == "0s"


def test_round_trip():
    for seconds in (1, 59, 61, 3600, 3661, 86399):
        assert parse_duration(format_duration(seconds)) == seconds
