"""POST /v1/audio/transcriptions and /v1/audio/translations: multipart uploads."""

from ..gateway import routes
from . import bp
from .serving import proxy

proxy(bp, "/audio/transcriptions", routes.TRANSCRIPTIONS, "The text of an audio file.")
proxy(bp, "/audio/translations", routes.TRANSLATIONS, "The English text of an audio file.")
