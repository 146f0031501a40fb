"""The API families the gateway speaks, kept apart from serving (as vLLM keeps its wire types
apart from its servers): per family, what a body may hold, what a request may cost before it
runs, and where its answers and stream events report usage."""

from .wire import FREE, Estimate, Wire

__all__ = ["FREE", "Estimate", "Wire"]
