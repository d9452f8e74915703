"""The research tools of one stage run, built when first used and all reporting to one
``ToolCalls``, whose records the stage then records with its result."""

from __future__ import annotations

from functools import cached_property

from forgeline.config import Settings
from forgeline.store.base import EventStore
from forgeline.tools.calls import ToolCalls
from forgeline.tools.fetch import Fetcher
from forgeline.tools.research import Research
from forgeline.tools.search import WebSearch

__all__ = ["Toolkit"]


class Toolkit:
    """Web search, fetch and research with the settings' ``[search]``, ``[fetch]`` and
    ``[research]`` tables; ``calls`` receives every call's ``tool.*`` record."""

    def __init__(self, settings: Settings, store: EventStore, calls: ToolCalls | None = None):
        self.settings = settings
        self.store = store
        self.calls = calls if calls is not None else ToolCalls()

    @property
    def research_enabled(self) -> bool:
        return self.settings.research.enabled

    @cached_property
    def search(self) -> WebSearch:
        return WebSearch(self.settings.search, self.store, recorder=self.calls)

    @cached_property
    def fetcher(self) -> Fetcher:
        return Fetcher(self.settings.fetch, recorder=self.calls)

    @cached_property
    def research(self) -> Research:
        return Research(self.search, self.fetcher, recorder=self.calls)
