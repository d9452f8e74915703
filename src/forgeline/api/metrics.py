"""``/metrics`` in Prometheus' format, computed from the store: whatever process did the
work (this server, a ``forgeline run``, a remote worker), its events count.

``Metrics`` folds the event log into totals, reading only what was appended since the
last scrape: stage durations (a stage's result event after the event that triggered it),
clarification requests, model calls, tokens and cost (``llm.usage``), and the CPU
seconds of sandboxed runs (tests, smoke runs, terminal commands). Tasks by status come
from the ``tasks`` read model at each scrape.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from forgeline.core.events import (
    DeployStatus,
    Event,
    LlmUsage,
    RunUsage,
    TestResults,
    ToolCommand,
    task_id_of,
)
from forgeline.core.reactions import STAGES
from forgeline.store.base import EventStore

BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Stage duration buckets, in seconds."""


class Metrics:
    """Totals over the log, brought up to date by ``scrape``."""

    page = 1000
    remembered = 200_000
    """How many task events' times are kept to time the stages they trigger."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.position = 0
        self._lock = asyncio.Lock()
        self._times: OrderedDict[str, datetime] = OrderedDict()
        self.durations: dict[str, list[int]] = {}
        """Per stage: observations per bucket (the last one is +Inf)."""
        self.duration_sums: dict[str, float] = {}
        self.clarifications = 0
        self.calls: Counter[tuple[str, str]] = Counter()
        self.tokens: Counter[tuple[str, str, str]] = Counter()
        self.cost: dict[tuple[str, str], float] = {}
        self.cpu: dict[str, float] = {}

    async def catch_up(self) -> None:
        async with self._lock:
            while True:
                events = await self.store.read_all(after=self.position, limit=self.page)
                for event in events:
                    self.apply(event)
                    self.position = event.position
                if len(events) < self.page:
                    return

    def apply(self, event: Event) -> None:
        if task_id_of(event.stream_id) is not None:
            self._times[event.id] = event.created_at
            if len(self._times) > self.remembered:
                self._times.popitem(last=False)
            started = self._times.get(event.causation_id or "")
            if event.actor in STAGES and started is not None:
                self._observe(event.actor, (event.created_at - started).total_seconds())
        data = event.data
        match data:
            case LlmUsage():
                key = (data.role, data.model)
                self.calls[key] += 1
                if not data.cache_hit:
                    self.tokens[(*key, "input")] += data.input_tokens
                    self.tokens[(*key, "output")] += data.output_tokens
                    self.tokens[(*key, "cached")] += data.cached_tokens
                    self.cost[key] = self.cost.get(key, 0.0) + data.cost_usd
            case TestResults():
                self._cpu("test", data.usage)
            case DeployStatus():
                self._cpu("deploy", data.usage)
            case ToolCommand():
                self._cpu("command", data.usage)
            case _ if data.type == "clarification.requested":
                self.clarifications += 1

    def _observe(self, stage: str, seconds: float) -> None:
        counts = self.durations.setdefault(stage, [0] * (len(BUCKETS) + 1))
        counts[bisect_left(BUCKETS, max(seconds, 0.0))] += 1
        self.duration_sums[stage] = self.duration_sums.get(stage, 0.0) + max(seconds, 0.0)

    def _cpu(self, kind: str, usage: RunUsage | None) -> None:
        if usage is not None and usage.cpu_s is not None:
            self.cpu[kind] = self.cpu.get(kind, 0.0) + usage.cpu_s

    async def scrape(self) -> bytes:
        """Everything, up to date, in Prometheus' text format."""
        await self.catch_up()
        statuses = Counter(row.status for row in await self.store.tasks())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(list(self.families(statuses))))
        return generate_latest(registry)

    def families(self, statuses: Counter[str]) -> Iterable[Metric]:
        tasks = GaugeMetricFamily("forgeline_tasks", "Tasks by status.", labels=["status"])
        for status in sorted(statuses):
            tasks.add_metric([status], statuses[status])
        yield tasks
        stages = HistogramMetricFamily(
            "forgeline_stage_duration_seconds",
            "From the event that triggered a stage to its result.",
            labels=["stage"],
        )
        for stage in sorted(self.durations):
            running, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), self.durations[stage], strict=True):
                running += count
                buckets.append((_bound(bound), float(running)))
            stages.add_metric([stage], buckets, self.duration_sums[stage])
        yield stages
        yield CounterMetricFamily(
            "forgeline_clarification_requests",
            "Questions the plan asked a person.",
            value=self.clarifications,
        )
        calls = CounterMetricFamily(
            "forgeline_model_calls", "Model calls (cache hits too).", labels=["role", "model"]
        )
        cost = CounterMetricFamily(
            "forgeline_model_cost_usd", "What model calls cost.", labels=["role", "model"]
        )
        for pair in sorted(self.calls):
            calls.add_metric(list(pair), self.calls[pair])
            cost.add_metric(list(pair), self.cost.get(pair, 0.0))
        tokens = CounterMetricFamily(
            "forgeline_model_tokens",
            "Tokens of model calls (not cache hits).",
            labels=["role", "model", "kind"],
        )
        for key in sorted(self.tokens):
            tokens.add_metric(list(key), self.tokens[key])
        cpu = CounterMetricFamily(
            "forgeline_sandbox_cpu_seconds",
            "CPU seconds of untrusted runs: tests, smoke runs, terminal commands.",
            labels=["kind"],
        )
        for kind in sorted(self.cpu):
            cpu.add_metric([kind], self.cpu[kind])
        yield from (calls, tokens, cost, cpu)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
