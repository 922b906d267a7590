"""An ordinary host app, as a Flask user writes one, with Ollama Deck added to it.

It has its own Flask-SQLAlchemy ``db`` and Flask-Migrate history, its own ``/``, ``/static``
and ``/api`` routes, a model and a 404 page. Settings come from the environment, so the
same app runs in-process in tests, under gunicorn and under ``flask db ...``:
``HOST_DATABASE_URL`` (required), ``HOST_DECK_BIND_URL`` (optional: the deck's tables in a
bind of their own), ``HOST_LOGIN=1`` (optional: a Flask-Login login, with the deck behind
``login_required``; see auth.py) and the deck's own ``OLLAMA_HOST`` / ``OLLAMA_DECK_*``.
"""

from __future__ import annotations

import os

from flask import Blueprint
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from ollama_deck import OllamaDeck

db = SQLAlchemy()
migrate = Migrate()


class Note(db.Model):  # the host's own table
    id = db.Column(db.Integer, primary_key=True)
    title = db.Column(db.String(50))


api = Blueprint("api", __name__)


@api.get("/notes")
def notes():
    return {"notes": [n.title for n in db.session.execute(db.select(Note)).scalars()]}


def create_host_app(**config) -> Flask:
    app = Flask(__name__)  # serves its own /static from tests/hostapp/static
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["HOST_DATABASE_URL"]
    bind = os.environ.get("HOST_DECK_BIND_URL")
    if bind:
        app.config["SQLALCHEMY_BINDS"] = {"ollama_deck": bind}
    app.config.update(config)
    db.init_app(app)
    migrate.init_app(app, db)
    app.register_blueprint(api, url_prefix="/api")

    @app.get("/")
    def home():
        return "host home page"

    @app.errorhandler(404)
    def not_found(error):
        return "host says: no such page", 404

    guard = None
    if os.environ.get("HOST_LOGIN") == "1":
        from flask_login import login_required

        from .auth import init_login

        init_login(app)
        guard = login_required
    OllamaDeck(
        app, db=db, url_prefix="/models", bind_key="ollama_deck" if bind else None, guard=guard
    )
    return app
