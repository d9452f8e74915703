"""Reading the packages a project declares: requirements.txt and pyproject.toml, with
clear errors for what is not a requirement specifier (pure: files only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.workspace.declared import (
    Declaration,
    PackageError,
    parse_install_args,
    read_declaration,
)


def test_nothing_declared_is_an_empty_declaration(tmp_path: Path) -> None:
    assert read_declaration(tmp_path) == Declaration()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\n')
    assert read_declaration(tmp_path) == Declaration()


def test_requirements_txt_is_read_line_by_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# web\nFastAPI>=0.110  # the framework\n\nhttpx[http2] ; python_version >= '3.8'\n"
        "-r requirements-dev.txt\nuvicorn \\\n  >=0.30\n"
    )
    (tmp_path / "requirements-dev.txt").write_text("pytest\nfastapi>=0.110\n")
    declared = read_declaration(tmp_path)
    assert declared.requirements == (
        "FastAPI>=0.110",
        'httpx[http2]; python_version >= "3.8"',
        "pytest",
        "fastapi>=0.110",
        "uvicorn>=0.30",
    )
    assert declared.names == ("fastapi", "httpx", "pytest", "uvicorn")
    assert declared.sources == ("requirements.txt",)


def test_pyproject_dependencies_and_test_groups_are_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "kv"\ndependencies = ["fastapi", "uvicorn>=0.30"]\n'
        '[project.optional-dependencies]\ntest = ["httpx", "kv[extra]"]\ndocs = ["sphinx"]\n'
        '[dependency-groups]\ndev = ["pytest-mock", {include-group = "lint"}]\n'
        'lint = ["ruff"]\n'
    )
    (tmp_path / "requirements.txt").write_text("click\n")
    declared = read_declaration(tmp_path)
    # The project naming itself is skipped; groups other than test/dev are not installed.
    assert declared.requirements == (
        "click",
        "fastapi",
        "uvicorn>=0.30",
        "httpx",
        "pytest-mock",
        "ruff",
    )
    assert declared.sources == ("requirements.txt", "pyproject.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "--index-url https://example.invalid/simple\n",
            r"requirements.txt line 1: the pip option '--index-url'",
        ),
        ("ok\n-e .\n", r"line 2: the pip option '-e'"),
        ("./local/pkg\n", "not a requirement specifier"),
        ("https://example.invalid/x.whl\n", "not a requirement specifier"),
        ("pkg @ https://example.invalid/x.whl\n", "direct reference"),
        ("-r ../outside.txt\n", "cannot read requirements file"),
        ("-r requirements.txt\n", "include each other"),
    ],
)
def test_what_is_not_a_specifier_is_refused_with_its_line(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "requirements.txt").write_text(text)
    with pytest.raises(PackageError, match=message):
        read_declaration(tmp_path)


def test_a_broken_pyproject_is_named(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(PackageError, match=r"pyproject\.toml is not valid TOML"):
        read_declaration(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = "fastapi"\n')
    with pytest.raises(PackageError, match="dependencies must be a list"):
        read_declaration(tmp_path)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["-e", "."], "option '-e'"),
        (["."], "not a requirement specifier"),
        (["./pkg"], "not a requirement specifier"),
        (["https://example.invalid/x.whl"], "not a requirement specifier"),
        (["pkg @ https://example.invalid/x.whl"], "direct reference"),
        (["--index-url", "https://example.invalid"], "option '--index-url'"),
        (["--extra-index-url=https://example.invalid", "x"], "option '--extra-index-url'"),
        (["-i", "https://example.invalid", "x"], "option '-i'"),
        (["-r", "../reqs.txt"], "cannot read requirements file"),
        (["-U"], "at least one requirement"),
    ],
)
def test_install_arguments_are_requirement_specifiers_only(
    tmp_path: Path, args: list[str], reason: str
) -> None:
    with pytest.raises(PackageError, match=reason):
        parse_install_args(args, tmp_path)


def test_install_arguments_may_name_a_requirements_file(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# deps\nrequests>=2.0  # http\n\nrich[jupyter]\n")
    request = parse_install_args(["-U", "-r", "requirements.txt", "--pre"], tmp_path)
    assert request.requirements == ("requests>=2.0", "rich[jupyter]")
    assert request.flags == ("--upgrade", "--pre")
    (tmp_path / "bad.txt").write_text("--index-url https://example.invalid\nx\n")
    with pytest.raises(PackageError, match=r"bad.txt line 1"):
        parse_install_args(["-r", "bad.txt"], tmp_path)
