"""Talking to vLLM servers: the pooled HTTP client, discovery and routing, the SSE relay.

Nothing in this package imports Flask; failures are raised as the exceptions in
:mod:`packet.upstream.errors` and translated to the OpenAI envelope by :mod:`packet.errors`.
"""
