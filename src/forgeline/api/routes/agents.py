"""``/api/agents``: the agent registry (note 002). Reading takes a read key; adding and
removing agents an admin key."""

from __future__ import annotations

from fastapi import APIRouter, Response

from forgeline.api.deps import AdminKey, ReadKey, ServerDep
from forgeline.api.errors import KEYED, ApiError, answers
from forgeline.api.schemas import AgentIn, AgentOut, agent_out
from forgeline.config import MODEL_ROLES

router = APIRouter(
    prefix="/api/agents", tags=["agents"], responses=answers(*KEYED, 400, 403, 404, 413, 422)
)


def _configured(server: ServerDep) -> dict[str, str]:
    models = server.runtime.models
    return {role: models.spec(role) for role in MODEL_ROLES}


@router.get("", response_model=list[AgentOut])
async def list_agents(server: ServerDep, key: ReadKey) -> list[AgentOut]:
    """The agents that take tasks: the registered ones, or the default agent (every
    complexity, the configured models, no limit) while none is."""
    registry = await server.assignments.registry()
    configured = _configured(server)
    return [agent_out(a, configured, bool(registry.agents)) for a in registry.effective()]


@router.post("", response_model=AgentOut, status_code=201)
async def add_agent(body: AgentIn, server: ServerDep, key: AdminKey) -> AgentOut:
    """Register an agent (or replace the one of that name); its model chains must be
    usable (400 naming the problem otherwise)."""
    if body.min_complexity > body.max_complexity:
        raise ApiError(400, "min_complexity is above max_complexity")
    agent = await server.assignments.register(
        body.name,
        {str(role): chain for role, chain in body.models.items()},
        min_complexity=body.min_complexity,
        max_complexity=body.max_complexity,
        capacity=body.capacity,
        settings=server.runtime.settings,
    )
    return agent_out(agent, _configured(server), True)


@router.delete("/{name}", status_code=204, response_class=Response)
async def remove_agent(name: str, server: ServerDep, key: AdminKey) -> Response:
    """Remove an agent: it takes no new task; the tasks it works on go on."""
    registry = await server.assignments.registry()
    if name not in registry.agents:
        raise ApiError(404, f"no agent {name!r}")
    await server.assignments.remove(name)
    return Response(status_code=204)
