"""The host app's login, as Flask-Login apps do it (microblog's way): a login page, a logout
and ``login_required`` on what needs a user. One user, ``ada``, kept in memory: the deck
behind the login is what the tests look at, not how users are stored.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Flask
from flask import redirect
from flask import request
from flask import url_for
from flask_login import login_user
from flask_login import LoginManager
from flask_login import logout_user
from flask_login import UserMixin

USER = "ada"
PASSWORD = "lovelace"

login = LoginManager()
login.login_view = "auth.login_page"
bp = Blueprint("auth", __name__)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


@login.user_loader
def load_user(user_id: str) -> User | None:
    return User(user_id) if user_id == USER else None


LOGIN_FORM = """<!doctype html><title>Log in</title><h1>Log in to the host app</h1>
<form method="post"><input name="username"><input name="password" type="password">
<button>Log in</button></form>"""


@bp.get("/login")
def login_page():
    return LOGIN_FORM


@bp.post("/login")
def log_in():
    if request.form.get("username") != USER or request.form.get("password") != PASSWORD:
        return LOGIN_FORM, 401
    login_user(User(USER))
    # Only a path on this site, as Flask-Login's docs ask (no open redirect).
    wanted = request.args.get("next") or ""
    return redirect(wanted if wanted.startswith("/") and not wanted.startswith("//") else "/")


@bp.route("/logout", methods=["GET", "POST"])  # a link, as in microblog, or a form
def log_out():
    logout_user()
    return redirect(url_for("auth.login_page"))


def init_login(app: Flask) -> None:
    """Give ``app`` its login page and Flask-Login (which needs a secret key for sessions)."""
    if not app.config.get("SECRET_KEY"):  # Flask's default is None, so setdefault would not
        app.config["SECRET_KEY"] = "host-app-tests-only"
    login.init_app(app)
    app.register_blueprint(bp)
