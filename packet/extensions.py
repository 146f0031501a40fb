"""Extension objects, created unbound here and bound to the app in the factory."""

from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from .limits import request_key


class Base(DeclarativeBase):
    """Declarative base shared by every table."""


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


# The limit storage only: the app runs without Flask-Limiter's request hooks (see
# create_app), so its decorators would not apply; limits are applied in packet.limits.
limiter = Limiter(key_func=request_key)
