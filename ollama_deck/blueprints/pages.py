"""The page: one HTML file, one script, one stylesheet; no build step."""

from __future__ import annotations

from flask import Blueprint
from flask import render_template

bp = Blueprint(
    "ollama_deck",
    __name__,
    template_folder="../templates",
    static_folder="../static",
    static_url_path="/static",
)


@bp.get("/")
def index():
    """The model manager page."""
    return render_template("ollama_deck/index.html")
