"""The Responses API: create, and the stored response's retrieve, delete, cancel, input items."""

from ..gateway import routes
from . import bp
from .serving import proxy

proxy(bp, "/responses", routes.RESPONSES, "Create a response; named SSE events when `stream`.")
proxy(bp, "/responses/<id>", routes.RESPONSE_GET, "A stored response.")
proxy(bp, "/responses/<id>", routes.RESPONSE_DELETE, "Delete a stored response.")
proxy(bp, "/responses/<id>/cancel", routes.RESPONSE_CANCEL, "Cancel a background response.")
proxy(bp, "/responses/<id>/input_items", routes.RESPONSE_INPUT_ITEMS, "A response's input.")
