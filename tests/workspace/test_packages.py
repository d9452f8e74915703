"""The package policy: deny, typosquat-shaped names, the allowlist, and the caps on a
resolved set (pure: no process, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.config import PACKAGES_ALLOW, PackagesConfig, load_settings
from forgeline.core.events import PackagePin
from forgeline.errors import ConfigError
from forgeline.workspace.packages import POPULAR, PackagePolicy, PackageRefused, one_edit_apart


def rule_for(name: str, **config: object) -> str | None:
    refused = PackagePolicy(PackagesConfig.model_validate(config)).refusal(name)
    return None if refused is None else refused.rule


@pytest.mark.parametrize(
    ("a", "b", "near"),
    [
        ("requests", "reqeusts", True),  # a swap
        ("requests", "request", True),  # a deletion
        ("numpy", "numpyy", True),  # an insertion
        ("flask", "flaks", True),
        ("django", "djanga", True),  # a substitution
        ("requests", "requests", False),
        ("requests", "rqeusets", False),
        ("click", "typer", False),
    ],
)
def test_one_edit_apart(a: str, b: str, near: bool) -> None:
    assert one_edit_apart(a, b) is near
    assert one_edit_apart(b, a) is near


def test_the_defaults_allow_common_web_data_and_cli_libraries() -> None:
    for name in ("fastapi", "uvicorn", "flask", "requests", "httpx", "pandas", "numpy",
                 "matplotlib", "beautifulsoup4", "click", "typer", "rich", "pytest"):  # fmt: skip
        assert rule_for(name) is None, name
    assert rule_for("Python_Dateutil") is None  # compared by normalized name


@pytest.mark.parametrize(
    ("name", "config", "rule"),
    [
        ("pycrypto", {}, "deny"),  # a default deny
        ("reqeusts", {}, "typosquat"),
        ("numpyy", {"allow": ["*"]}, "typosquat"),  # even when every name is allowed
        ("some-unknown-lib", {}, "allow"),
        ("some-unknown-lib", {"extra_allow": ["some-*"]}, None),
        ("some-unknown-lib", {"allow": ["*"]}, None),
        ("requests", {"extra_deny": ["requests"]}, "deny"),  # deny beats allow
        ("reqeusts", {"extra_allow": ["reqeusts"]}, None),  # allowed by its exact name
        ("reqeusts", {"extra_allow": ["req*"]}, "typosquat"),  # a pattern is not exact
        ("flask", {"extra_deny": ["fl*"]}, "deny"),
    ],
)
def test_each_rule_refuses_by_name(name: str, config: dict[str, object], rule: str | None) -> None:
    assert rule_for(name, **config) == rule


def test_a_refusal_names_the_package_the_rule_and_the_fix() -> None:
    policy = PackagePolicy(PackagesConfig())
    with pytest.raises(PackageRefused) as info:
        policy.check_declared(["fastapi", "reqeusts"])
    assert (info.value.name, info.value.rule) == ("reqeusts", "typosquat")
    assert "'requests'" in str(info.value) and "extra_allow" in str(info.value)
    with pytest.raises(PackageRefused, match=r"\[packages\] allow.*extra_allow"):
        policy.check_declared(["left-pad-for-python"])


def test_no_default_is_a_typosquat_of_another() -> None:
    """Every name of the default allowlist may be declared as it is."""
    for name in PACKAGES_ALLOW:
        assert rule_for(name) is None, name
    assert {"fastapi", "requests", "numpy"} <= POPULAR


def pins(*sizes: int) -> list[PackagePin]:
    return [
        PackagePin(name=f"p{i}", version="1", sha256="0" * 64, size=s) for i, s in enumerate(sizes)
    ]


def test_a_resolved_set_is_checked_for_denied_packages_and_the_caps() -> None:
    policy = PackagePolicy(PackagesConfig(max_wheels=2, max_total_mb=1, extra_deny=("p1",)))
    with pytest.raises(PackageRefused, match="it comes with app") as info:
        policy.check_resolved(pins(1, 1), ["app"])
    assert (info.value.name, info.value.rule) == ("p1", "deny")
    policy = PackagePolicy(PackagesConfig(max_wheels=2, max_total_mb=1))
    policy.check_resolved(pins(400_000, 600_000), ["app"])
    with pytest.raises(PackageRefused, match=r"3 wheels, more than .* max_wheels = 2"):
        policy.check_resolved(pins(1, 1, 1), ["app"])
    with pytest.raises(PackageRefused, match=r"1\.0 MB, more than .* max_total_mb = 1"):
        policy.check_resolved(pins(500_000, 500_001), ["app"])


def test_an_entry_that_is_not_a_name_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path
    (root / "forgeline.toml").write_text('[packages]\nextra_allow = ["http://x"]\n')
    with pytest.raises(ConfigError, match=r"packages\.extra_allow"):
        load_settings(root)
