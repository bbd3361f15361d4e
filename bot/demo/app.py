"""The demo shop app: a small mobile-styled single-page app that embeds the chat widget.

It plays the part of the shop's own app and backend: a demo login for the customers of
:data:`bot.orders.DEMO_CUSTOMERS` (an HttpOnly session cookie signed with a random key kept
in memory), a token endpoint that signs widget tokens with
:func:`bot.channels.auth.issue_token`, and the customer's orders read from the order source
(:class:`bot.orders.SqlOrderSource`). The pages load the widget from the Rasa server
(``{widget_public_url}/webhooks/widget/widget.js``).

Routes:

* ``GET /``: the single-page app (hash routes ``#/home``, ``#/product/<id>``,
  ``#/orders``, ``#/cart``, ``#/checkout``, ``#/login``).
* ``GET /api/me``: ``{customer, customers}`` (``customer`` is null when logged out).
* ``POST /api/login`` ``{"customer_id": "cust-anna"}``: log in (sets the cookie).
* ``GET /api/token``: ``{token, expires_at}`` for the logged-in customer, 401 otherwise
  (``iat`` and ``exp``, at most ``WIDGET_JWT_MAX_TTL`` apart; ``aud``/``iss`` when
  ``WIDGET_JWT_AUDIENCE``/``WIDGET_JWT_ISSUER`` are set).
* ``POST /api/logout``: log out (clears the cookie).
* ``GET /api/orders``: the logged-in customer's orders, newest first.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional

from aiohttp import web

from bot.channels.auth import issue_token
from bot.orders import DEMO_CUSTOMERS, DEMO_ORDER_NUMBERS, OrderView, SqlOrderSource
from bot.settings import Settings, get_settings

__all__ = ["create_app", "main"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
COOKIE_NAME = "northwind_demo_session"
SESSION_SECONDS = 12 * 3600
APP_VERSION = "demo-1.0"

SETTINGS_KEY = web.AppKey("settings", Settings)
COOKIE_KEY = web.AppKey("cookie_key", bytes)
ORDERS_KEY = web.AppKey("orders", SqlOrderSource)
INDEX_KEY = web.AppKey("index_html", str)


# ------------------------------------------------------------------ session cookie


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(customer_id: str, key: bytes, now: Optional[float] = None) -> str:
    """Return the cookie value for a logged-in customer.

    Args:
        customer_id: The demo customer's id.
        key: The HMAC key.
        now: Login time (Unix seconds); default: now.

    Returns:
        ``<payload>.<signature>``, both base64url.
    """
    payload = _b64(
        json.dumps({"sub": customer_id, "iat": int(now or time.time())}).encode("utf-8")
    )
    signature = _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def read_session(value: Optional[str], key: bytes, now: Optional[float] = None) -> Optional[str]:
    """Return the customer id of a valid, unexpired cookie value, else None.

    Args:
        value: The cookie value (may be None).
        key: The HMAC key.
        now: Current time (Unix seconds); default: now.
    """
    if not value or value.count(".") != 1:
        return None
    payload, signature = value.split(".")
    expected = _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(_unb64(payload))
        customer_id, issued = str(data["sub"]), float(data["iat"])
    except (ValueError, KeyError, TypeError):
        return None
    if (now or time.time()) - issued > SESSION_SECONDS or customer_id not in DEMO_CUSTOMERS:
        return None
    return customer_id


def _customer(request: web.Request) -> Optional[str]:
    return read_session(request.cookies.get(COOKIE_NAME), request.app[COOKIE_KEY])


def _public(customer_id: str) -> Dict[str, str]:
    profile = DEMO_CUSTOMERS[customer_id]
    return {"id": customer_id, "name": profile["name"], "email": profile["email"]}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------------ handlers


async def index(request: web.Request) -> web.Response:
    """Serve the single-page app with the widget URL filled in."""
    return web.Response(
        text=request.app[INDEX_KEY],
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def me(request: web.Request) -> web.Response:
    """Who is logged in, and which demo customers one can log in as."""
    customer_id = _customer(request)
    return _json(
        {
            "customer": _public(customer_id) if customer_id else None,
            "customers": [_public(cid) for cid in DEMO_CUSTOMERS],
        }
    )


async def login(request: web.Request) -> web.Response:
    """Log in as a demo customer: ``{"customer_id": ...}`` → session cookie."""
    if request.content_type != "application/json":
        return _error(415, "bad_request", "Send JSON.")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "bad_request", "The body is not JSON.")
    customer_id = body.get("customer_id") if isinstance(body, dict) else None
    if not isinstance(customer_id, str) or customer_id not in DEMO_CUSTOMERS:
        return _error(400, "bad_request", f"customer_id must be one of {sorted(DEMO_CUSTOMERS)}.")
    response = _json({"customer": _public(customer_id)})
    response.set_cookie(
        COOKIE_NAME,
        sign_session(customer_id, request.app[COOKIE_KEY]),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Lax",
        path="/",
        secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """Log out: clear the session cookie."""
    response = _json({"customer": None})
    response.del_cookie(COOKIE_NAME, path="/")
    return response


async def token(request: web.Request) -> web.Response:
    """A fresh widget token for the logged-in customer: ``{token, expires_at}``."""
    customer_id = _customer(request)
    if customer_id is None:
        return _error(401, "not_logged_in", "Log in first.")
    settings = request.app[SETTINGS_KEY]
    if settings.widget_jwt_algorithm != "HS256" or not settings.widget_jwt_secret:
        return _error(
            503,
            "no_secret",
            "The demo signs HS256 tokens: set WIDGET_JWT_SECRET (or run `make run`, which "
            "writes var/widget_jwt_secret).",
        )
    now = time.time()
    # iat + exp, never longer-lived than the chat accepts (WIDGET_JWT_MAX_TTL); aud/iss
    # when the deployment checks them (WIDGET_JWT_AUDIENCE / WIDGET_JWT_ISSUER).
    ttl = min(settings.demo_token_ttl, settings.widget_jwt_max_ttl)
    profile = DEMO_CUSTOMERS[customer_id]
    signed = issue_token(
        customer_id,
        settings.widget_jwt_secret,
        profile={
            "name": profile["name"],
            "email": profile["email"],
            "locale": profile["locale"],
            "timezone": profile["timezone"],
            "app_version": APP_VERSION,
            "device": "Web demo",
        },
        ttl_seconds=ttl,
        audience=settings.widget_jwt_audience,
        issuer=settings.widget_jwt_issuer,
        now=now,
    )
    return _json({"token": signed, "expires_at": int(now) + ttl})


def _order_json(order: OrderView) -> Dict[str, Any]:
    return {
        "number": order.number,
        "status": order.status,
        "placed_at": order.placed_at.isoformat(),
        "expected_delivery": order.expected_delivery.isoformat()
        if order.expected_delivery
        else None,
        "carrier": order.carrier,
        "total_eur": str(order.total_eur),
        "items": [{"name": item.name, "qty": item.qty} for item in order.items],
        "refund_status": order.refund_status,
    }


async def orders(request: web.Request) -> web.Response:
    """The logged-in customer's orders from the order source (newest first)."""
    customer_id = _customer(request)
    if customer_id is None:
        return _error(401, "not_logged_in", "Log in first.")
    try:
        found = await request.app[ORDERS_KEY].recent_orders(customer_id, limit=20)
    except Exception as error:  # noqa: BLE001 - the demo falls back to the fixed list
        logger.warning("Order source unavailable (%s); listing the demo order numbers.", error)
        numbers = DEMO_ORDER_NUMBERS.get(customer_id, ())
        return _json({"source": "demo_list", "orders": [{"number": n} for n in numbers]})
    return _json({"source": "order_source", "orders": [_order_json(o) for o in found]})


# ------------------------------------------------------------------ app


def render_index(settings: Settings) -> str:
    """The app's HTML with the widget URL and the client config filled in."""
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    config = json.dumps(
        {"widgetUrl": settings.widget_public_url, "appVersion": APP_VERSION}
    ).replace("<", "\\u003c")
    return template.replace("{{WIDGET_URL}}", html.escape(settings.widget_public_url)).replace(
        "{{CONFIG_JSON}}", config
    )


async def _open_orders(app: web.Application) -> AsyncIterator[None]:
    app[ORDERS_KEY] = SqlOrderSource.from_url(app[SETTINGS_KEY].orders_db_url)
    yield
    await app[ORDERS_KEY].dispose()


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def create_app(settings: Optional[Settings] = None) -> web.Application:
    """Build the demo app.

    Args:
        settings: Settings to use; default: :func:`bot.settings.get_settings`.

    Returns:
        The aiohttp application.
    """
    settings = settings or get_settings()
    app = web.Application(middlewares=[_security_headers])
    app[SETTINGS_KEY] = settings
    app[COOKIE_KEY] = secrets.token_bytes(32)
    app[INDEX_KEY] = render_index(settings)
    app.cleanup_ctx.append(_open_orders)
    app.router.add_get("/", index)
    app.router.add_get("/api/me", me)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/token", token)
    app.router.add_get("/api/orders", orders)
    app.router.add_static("/static/", STATIC_DIR, show_index=False)
    return app


def main() -> None:
    """Run the demo app on ``settings.demo_host:settings.demo_port`` until interrupted."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s  %(message)s"
    )
    from bot.production import refuse_in_production
    from bot.startup import exit_on_bad_configuration

    exit_on_bad_configuration("demo shop")
    settings = get_settings()

    refuse_in_production(settings, "the demo shop (python -m bot.demo)")
    if not settings.widget_jwt_secret:
        logger.warning(
            "No WIDGET_JWT_SECRET (nor var/widget_jwt_secret): logging in works, but the "
            "chat cannot get a token."
        )
    print(
        f"\n  Northwind demo shop:  http://{settings.demo_host}:{settings.demo_port}/\n"
        f"  Widget served by:     {settings.widget_public_url}/webhooks/widget/widget.js\n",
        flush=True,
    )
    web.run_app(
        create_app(settings),
        host=settings.demo_host,
        port=settings.demo_port,
        print=None,
        access_log_format='%a "%r" %s %b',
    )
