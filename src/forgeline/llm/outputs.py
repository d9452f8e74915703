"""What each role must answer: typed, validated outputs (pydantic-ai output types)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from forgeline.core.events import FileSpec, FileWrite, PlanItem, RunSpec


class Output(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanOutput(Output):
    summary: str = Field(description="One sentence: what will be built.")
    items: tuple[PlanItem, ...] = Field(
        min_length=1,
        description="Steps as a DAG: ids, what to do, depends_on ids, files each step writes.",
    )


class ArchitectureOutput(Output):
    summary: str = Field(description="The design in one paragraph.")
    decision: str = Field(description="The ADR body: context, decision, consequences.")
    files: tuple[FileSpec, ...] = Field(default=(), description="Files the project will have.")
    run: RunSpec = Field(
        default=RunSpec(),
        description="How to smoke-run it: cli/library run `command` once; web starts it "
        "with {port} and polls health_path.",
    )


class CodeChange(Output):
    summary: str = Field(default="", description="What changed and why, one line.")
    files: tuple[FileWrite, ...] = Field(
        description="Whole new contents of every file to create or replace, paths relative "
        "to the repository root."
    )


class ReviewOutput(Output):
    approved: bool
    comments: tuple[str, ...] = Field(
        default=(), description="Concrete changes requested; empty when approved."
    )
