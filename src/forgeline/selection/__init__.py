"""Candidate selection: sample whole-file answers, check them against the request's spec,
let independently written tests vote, repair only in a fresh conversation.

Not yet wired into the pipeline (issue 12's integration replaces the coder with it).
"""

from forgeline.selection.agreement import Choice, Ranked, choose
from forgeline.selection.candidate import Candidate, candidate_prompt, sample_candidates
from forgeline.selection.designer import DesignedTests, design_tests
from forgeline.selection.execution import CandidateRunner, Evaluation, TestSuite, build_suite
from forgeline.selection.flow import Selection, select
from forgeline.selection.repair import repair

__all__ = [
    "Candidate",
    "CandidateRunner",
    "Choice",
    "DesignedTests",
    "Evaluation",
    "Ranked",
    "Selection",
    "TestSuite",
    "build_suite",
    "candidate_prompt",
    "choose",
    "design_tests",
    "repair",
    "sample_candidates",
    "select",
]
