"""The provider-neutral admin API under /_sandbox/: health, reset, faults, quotas and the request log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from sandbox.state import SandboxState
from sandbox.traffic import FaultPlan, QuotaConfig

router = APIRouter(prefix="/_sandbox")


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


SandboxDep = Annotated[SandboxState, Depends(sandbox_state)]


@router.get("/health")
async def health(sandbox: SandboxDep) -> dict[str, Any]:
    return {"ok": True, "seed": sandbox.seed}


@router.post("/reset")
async def reset(sandbox: SandboxDep) -> dict[str, Any]:
    sandbox.reset()
    return {"ok": True}


@router.get("/faults")
async def get_faults(sandbox: SandboxDep) -> FaultPlan:
    return sandbox.traffic.faults.plan


@router.put("/faults")
async def set_faults(plan: FaultPlan, sandbox: SandboxDep) -> FaultPlan:
    sandbox.traffic.faults.configure(plan)
    return plan


@router.delete("/faults", status_code=204)
async def clear_faults(sandbox: SandboxDep) -> None:
    sandbox.traffic.faults.configure(FaultPlan())


@router.get("/quotas")
async def get_quotas(sandbox: SandboxDep) -> QuotaConfig:
    return sandbox.traffic.quotas.config


@router.put("/quotas")
async def set_quotas(config: QuotaConfig, sandbox: SandboxDep) -> QuotaConfig:
    sandbox.traffic.quotas.configure(config)
    return config


@router.delete("/quotas", status_code=204)
async def clear_quotas(sandbox: SandboxDep) -> None:
    sandbox.traffic.quotas.configure(QuotaConfig())


@router.get("/requests")
async def request_log(sandbox: SandboxDep, after: int = 0) -> list[dict[str, Any]]:
    return sandbox.traffic.log.since(after)


@router.delete("/requests", status_code=204)
async def clear_request_log(sandbox: SandboxDep) -> None:
    sandbox.traffic.log.clear()
