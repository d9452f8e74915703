"""The specification step: checks and trial tests derived from the request itself.

``derive_spec(request)`` reads the interface and the literal examples a request states
(``extractor``, ``examples``); ``spec_suite(spec)`` writes them as pytest files, the hard
filter every candidate answer passes (``checks``); ``copy_examples`` asks a model to copy
examples the patterns missed, and keeps an assert only when its literals are the
request's own (``copier``). Not yet wired into the pipeline.
"""

from forgeline.spec.checks import SpecCheck, spec_suite, tests_file
from forgeline.spec.extractor import derive_spec
from forgeline.spec.model import (
    CallableSpec,
    CommandSpec,
    ModuleSpec,
    Param,
    RouteSpec,
    ServerSpec,
    Spec,
    Trial,
)

__all__ = [
    "CallableSpec",
    "CommandSpec",
    "ModuleSpec",
    "Param",
    "RouteSpec",
    "ServerSpec",
    "Spec",
    "SpecCheck",
    "Trial",
    "derive_spec",
    "spec_suite",
    "tests_file",
]
