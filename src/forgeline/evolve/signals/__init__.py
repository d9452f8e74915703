"""Where the evolution daemon looks for work, one module per kind of signal: failing tests
(``tests``), lint findings (``lint``, ruff), type errors (``typecheck``, mypy), TODO/FIXME
markers (``markers``), uncovered functions (``uncovered``, coverage) and a person's goals
(``goals``, ``.forgeline/goals.md``). Each turns what it finds into ``core.evolution``
``Signal``s; whatever runs the repository's code runs through the spawner, in the
repository's venv (``scan.Probe``)."""
