"""The HTTP side of ``segal serve``: a Flask app over a :class:`~segal.serve.backend.Backend`.

Why Flask: it is what Label Studio's own ``label-studio-ml-backend`` serves its models with (its
``_wsgi.py``), so the routes and JSON match what Label Studio expects, and it is a small, well-kept
WSGI library.  The SDK itself is not used: its PyPI release (``label-studio-ml`` 1.0.9, 2023) predates
the Label Studio this is tested with and pulls in its own pins.  The server is Werkzeug's threaded
one, in one process on purpose: the backend is the run's single writer (it holds the run's lock).

Every route needs the token.  Label Studio sends it as the password of the ML backend connection's
basic auth (``auth_method: BASIC_AUTH``, ``basic_auth_pass``; the user name is free), and a webhook as
a header (``Authorization: Bearer <token>``, the webhook's ``headers``).  Anything else gets 401.
"""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import sys

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from segal.errors import UserError
from segal.serve.backend import Backend, NotReady

TOKEN_ENV = "SEGAL_SERVE_TOKEN"
log = logging.getLogger("segal.serve")


def presented_token(header: str | None) -> str | None:
    """The token in an ``Authorization`` header: Basic (the password), Bearer or Token."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    if scheme in ("bearer", "token"):
        return value
    return None


def create_app(backend: Backend, token: str) -> Flask:
    if not token:
        raise UserError("segal serve needs a token", fix=f"pass --token TOKEN or set {TOKEN_ENV}")
    app = Flask("segal.serve")
    expected = token.encode()

    @app.before_request
    def authenticate():
        got = presented_token(request.headers.get("Authorization"))
        if got is None or not hmac.compare_digest(got.encode(), expected):
            response = jsonify(error="missing or wrong token: give Label Studio's ML backend connection basic auth "
                                     "with the token as password, or send 'Authorization: Bearer TOKEN'")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Basic realm="segal serve"'
            return response
        return None

    def body() -> dict:
        payload = request.get_json(force=True, silent=True)
        if not isinstance(payload, dict):
            raise UserError("the request body is not a JSON object", path=request.path,
                            fix="send JSON, as Label Studio does")
        return payload

    @app.get("/")
    @app.get("/health")
    def health():
        return jsonify(backend.health())

    @app.post("/setup")
    def setup():
        return jsonify(backend.setup(body()))

    @app.post("/validate")
    def validate():
        backend.setup({"schema": body().get("config")})
        return jsonify(status="ok")

    @app.post("/predict")
    def predict():
        return jsonify(backend.predict(body()))

    @app.post("/webhook")
    def webhook():
        return jsonify(backend.import_annotation(body()))

    @app.post("/train")
    def train():  # Label Studio's "start training": retraining is driven by the labels; report where it stands
        return jsonify(backend.health())

    @app.errorhandler(UserError)
    def user_error(exc: UserError):
        message = str(exc)
        log.warning("%s %s refused: %s", request.method, request.path, message)
        backend.run.log("serve_refused", route=request.path, error=message)
        return jsonify(error=message), 400

    @app.errorhandler(NotReady)
    def not_ready(exc: NotReady):
        return jsonify(error=str(exc)), 503

    @app.errorhandler(Exception)
    def internal(exc: Exception):
        if isinstance(exc, HTTPException):  # 404, 405: Flask's own answer
            return exc
        log.exception("%s %s failed", request.method, request.path)
        return jsonify(error=f"internal error ({type(exc).__name__}: {exc})"), 500

    return app


def serve_forever(backend: Backend, token: str, host: str, port: int) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM); the caller closes the backend."""
    from werkzeug.serving import make_server

    app = create_app(backend, token)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    try:  # werkzeug prints its own lines and exits on a taken port: check first, for one line of ours
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                        fix="pass another --port or --host, or stop the program using the port") from None
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
