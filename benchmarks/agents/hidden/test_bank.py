import pytest
from bank import Account, InsufficientFunds, transfer


def test_deposit_and_withdraw():
    account = Account("ada", 10)
    account.deposit(5)
    account.withdraw(3)
    assert account.balance == 12
    assert Account("bob").balance == 0


def test_amounts_must_be_positive():
    account = Account("ada", 10)
    for bad in (0, -5):
        with pytest.raises(ValueError):  # noqa: PT011
            account.deposit(bad)
        with pytest.raises(ValueError):  # noqa: PT011
            account.withdraw(bad)
    assert account.balance == 10


def test_overdraw_is_refused():
    account = Account("ada", 10)
    with pytest.raises(InsufficientFunds):
        account.withdraw(11)
    assert account.balance == 10
    assert issubclass(InsufficientFunds, Exception)


def test_balance_is_read_only():
    account = Account("ada", 10)
    with pytest.raises(AttributeError):
        account.balance = 100


def test_transfer_all_or_nothing():
    a, b = Account("a", 10), Account("b", 0)
    transfer(a, b, 4)
    assert (a.balance, b.balance) == (6, 4)
    with pytest.raises(InsufficientFunds):
        transfer(a, b, 100)
    assert (a.balance, b.balance) == (6, 4)
