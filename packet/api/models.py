"""GET /v1/models and /v1/models/{id}: what the caller's ready endpoints serve (of it, only
what the key may use when it has an allow-list)."""

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from ..errors import ModelNotFound
from ..exchange import current
from ..gateway.targets import endpoint_rows
from ..limits import counted
from ..runtime import runtime
from . import bp


def _served() -> dict[str, dict[str, Any]]:
    rt = runtime()
    principal = current().principal
    assert principal is not None  # the v1 blueprint authenticates first
    states = rt.discovery.states(endpoint_rows(rt.settings, principal))
    served = rt.discovery.served_models(states)
    allowed = principal.controls.models if principal.controls is not None else None
    if allowed is None:
        return served
    return {model_id: card for model_id, card in served.items() if model_id in allowed}


@bp.get("/models")
@counted
def list_models() -> ResponseReturnValue:
    """OpenAI list format; vLLM's extra fields (max_model_len, root, …) kept."""
    return jsonify({"object": "list", "data": list(_served().values())})


@bp.get("/models/<path:model_id>")
@counted
def get_model(model_id: str) -> ResponseReturnValue:
    """One model card, or 404 listing the models that are served."""
    served = _served()
    if model_id not in served:
        raise ModelNotFound(
            f"The model '{model_id}' does not exist or is not served by your running "
            f"endpoints. Available models: {', '.join(served) or 'none'}.",
            param="model",
        )
    return jsonify(served[model_id])
