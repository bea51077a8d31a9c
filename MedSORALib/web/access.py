"""Who may reach a ``medsora serve`` server: its owner's browser, one page at a time.

The server holds a patient's CT and the symptoms typed about it, and binding to
127.0.0.1 does not keep other web sites out: a page from anywhere, open in the
same browser, can send requests and open websockets to 127.0.0.1. So every
HTTP request and websocket passes :class:`AccessGuard` (an aiohttp middleware):

- **Host**: the ``Host`` header must name this server (the bound address,
  ``localhost``, a loopback address or the machine's name) and its port; any
  other gets 403, which defeats DNS rebinding (a foreign name resolving to
  127.0.0.1).
- **Token**: a random token (``secrets.token_urlsafe``, 256 bits) is printed in
  the URL at start-up. A request carrying it as ``?token=`` gets it back as a
  cookie (``HttpOnly``, ``SameSite=Strict``, named after the port); later
  requests must carry the cookie or the token, else 403.
- **Origin**: a websocket must come from the page's own origin
  (``http://<Host>``); browsers always send ``Origin`` on a websocket, and
  a page of another origin (another port of 127.0.0.1 included, where the
  cookie would be sent) gets 403. Requests the browser marks as made by
  another site (``Sec-Fetch-Site`` ``cross-site`` or ``same-site``) are
  refused unless they are top-level navigations.
- **One owner**: one websocket at a time drives the scene. While it is open,
  another one waits ``TAKEOVER_GRACE_S`` (a reload closes the old one) and is
  then refused. A page request from another browser session (another session
  cookie) gets an "in use" page instead of the app. A second tab or window of
  the *same* browser cannot be told from a reload by its page request (both
  arrive while the first page's websocket is still open), so it gets the app
  page, minted with a page id of its own (:meth:`AccessGuard.app_page`). The
  page's websocket carries that id; when it is refused, the server accepts it
  only to close it at once with code ``IN_USE_CLOSE_CODE`` and a reason, and
  the page's script covers the page with an "in use" notice. The first tab
  keeps the scene: what a radiologist typed there stays there, and the second
  tab never receives the state. A websocket without a page id of this server
  is refused with a bare 409. When another browser session, or another tab of
  the same browser, takes the page over later (the first one closed),
  :attr:`AccessGuard.on_new_session` lets the app clear what the previous one
  typed; a reload of the same tab keeps it. Tabs are told apart by a random
  tab id the page keeps in its ``sessionStorage`` (which a reload keeps and a
  new tab does not) and sends with its websocket.

What the page may read from the server's disk is decided by
:func:`loadable_path`: files under the data root, or files this server wrote,
with one message for every refusal.

Nothing here imports trame, so the rules are tested on their own.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import secrets
import socket
from collections import OrderedDict
from html import escape
from pathlib import Path

from ..errors import InputFileError

TOKEN_PARAMETER = "token"
#: Seconds a new websocket waits for the open one to close (a page reload) before it is refused.
TAKEOVER_GRACE_S = 5.0
#: Paths that are the page itself (the "in use" page replaces them for another browser session).
PAGE_PATHS = ("/", "/index.html")
#: Query parameter carrying a served page's id on its websocket.
PAGE_PARAMETER = "medsora_page"
#: Close code of a websocket refused because another page owns the scene (4000-4999: for applications).
IN_USE_CLOSE_CODE = 4409
#: Query parameter carrying the tab id (kept by the tab across reloads) on a page's websocket.
TAB_PARAMETER = "medsora_tab"
#: Page ids remembered (the most recent pages served; an older page's websocket gets a bare refusal).
PAGES_KEPT = 256
#: Why a page's websocket was refused (the close reason, at most 123 bytes, is the key; the page shows the text).
IN_USE_REASONS = {
    "same-browser": ("MedSORA is open in another tab or window of this browser. One page at a time works "
                     "with the CT, so that nothing typed in one shows in another: go on in that tab, or close "
                     "it and press Reload here."),
    "other-browser": ("Another browser window is working with this server's CT. One window at a time may use "
                      "it: close the other window, then press Reload here."),
}

IN_USE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>MedSORA: in use</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1 id="in-use">MedSORA is in use</h1>
<p>Another browser window is working with this server's CT. One window at a time may use it:
close the other window, then reload this page.</p>
</body></html>
"""

#: Put in the served app page before trame's scripts (PAGE_ID replaced by the page's id): the page's
#: websocket carries its id, and a websocket closed as "in use" covers the page with the reason.
PAGE_SCRIPT = """<script>
(() => {
  const page = "PAGE_ID";
  const reasons = REASONS;
  let tab = null;
  try {
    tab = window.sessionStorage.getItem("medsora-tab");
    if (!tab) {
      tab = Array.from(window.crypto.getRandomValues(new Uint8Array(16)),
                       (b) => b.toString(16).padStart(2, "0")).join("");
      window.sessionStorage.setItem("medsora-tab", tab);
    }
  } catch (error) {
    tab = null;  // no storage: the server tells browser sessions apart only
  }
  const Native = window.WebSocket;
  function inUse(reason) {
    if (document.getElementById("in-use")) return;
    const box = document.createElement("div");
    box.id = "in-use-notice";
    box.setAttribute("role", "alertdialog");
    box.style.cssText = "position: fixed; inset: 0; z-index: 2147483647; background: #fff; color: #222;"
      + " font-family: sans-serif; padding: 3em;";
    const title = document.createElement("h1");
    title.id = "in-use";
    title.textContent = "MedSORA is in use";
    const text = document.createElement("p");
    text.id = "in-use-reason";
    text.textContent = reason;
    const reload = document.createElement("button");
    reload.id = "in-use-reload";
    reload.textContent = "Reload";
    reload.onclick = () => window.location.reload();
    box.append(title, text, reload);
    document.body.append(box);
    const app = document.getElementById("app");
    if (app) app.remove();  // nothing of the app stays behind the notice
  }
  let refused = false;
  class PageSocket extends Native {
    constructor(url, protocols) {
      // A refused page stays refused: it never connects later behind the notice (a reload asks again).
      if (refused) throw new Error("MedSORA is in use in another page");
      const target = new URL(url, window.location.href);
      if (target.host === window.location.host) {
        target.searchParams.set("PAGE_PARAMETER", page);
        if (tab) target.searchParams.set("TAB_PARAMETER", tab);
      }
      super(target.href, protocols);
      this.addEventListener("close", (event) => {
        if (event.code !== IN_USE_CLOSE_CODE) return;
        refused = true;
        inUse(reasons[event.reason] || reasons["other-browser"]);
      });
    }
  }
  window.WebSocket = PageSocket;
})();
</script>
"""

FORBIDDEN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>MedSORA: forbidden</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>403: forbidden</h1><p>{reason}</p></body></html>
"""


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address (unresolvable: False)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def machine_names() -> set[str]:
    """The machine's host name and fully qualified name, lower-case."""
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return {n for n in names if n}


def split_host(value: str) -> tuple[str, int | None]:
    """``(name, port)`` of a Host header (``name``, ``name:port``, ``[v6]:port``); port None when absent or bad."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    try:
        return name, int(port) if port else None
    except ValueError:
        return name, -1


class AccessGuard:
    """The token, host, origin and single-owner rules of one server (see the module doc).

    Args:
        host: the address the server binds (``--host``).
        token: the access token (default: a new random one).
    """

    def __init__(self, host: str, token: str | None = None):
        self.host = host
        self.token = token or secrets.token_urlsafe(32)
        self.port: int | None = None
        names = {"localhost", "127.0.0.1", "::1", host.strip().lower().strip("[]")} | machine_names()
        self.allowed_hosts = {n for n in names if n and n not in ("0.0.0.0", "::")}
        self.every_interface = host.strip().strip("[]") in ("0.0.0.0", "::", "")
        self._local_addresses: dict[str, bool] = {}
        if self.every_interface:
            # Bound to every interface: the machine's own addresses name it too.
            for name in machine_names():
                try:
                    self.allowed_hosts |= {info[4][0].lower() for info in socket.getaddrinfo(name, None)}
                except OSError:
                    pass
        self._owner: object | None = None
        self._owner_session: str | None = None
        #: Ids of the app pages served (most recent last) -> the browser session each was served to.
        self._pages: OrderedDict[str, str] = OrderedDict()
        #: trame's index.html, the app page (set by the app when the server binds; None: served as is).
        self.index_file: Path | None = None
        self._last_session: str | None = None
        self._last_tab: str | None = None
        self._released = asyncio.Event()
        #: Called (on the event loop) when a browser session other than the previous owner's takes the page,
        #: or another tab of the same browser session (both tabs known).
        self.on_new_session = None

    # ------------------------------------------------------------------ names
    @property
    def cookie_name(self) -> str:
        return f"medsora-token-{self.port or 0}"

    @property
    def session_cookie(self) -> str:
        return f"medsora-session-{self.port or 0}"

    def url(self, host: str | None = None) -> str:
        """The URL to open (with the token); the machine's name when bound to every interface."""
        shown = host or (socket.gethostname() if self.every_interface else self.host)
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/?{TOKEN_PARAMETER}={self.token}"

    # ------------------------------------------------------------------ rules
    def host_allowed(self, header: str | None) -> bool:
        if not header:
            return False
        name, port = split_host(header)
        if name not in self.allowed_hosts and not (self.every_interface and self._is_local_address(name)):
            return False
        return port is None or self.port is None or port == self.port

    def _is_local_address(self, name: str) -> bool:
        """Whether ``name`` is an IP address of this machine (a socket can be bound to it)."""
        known = self._local_addresses.get(name)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((name, 0))
            local = not address.is_unspecified
        except OSError:
            local = False
        if len(self._local_addresses) < 256:
            self._local_addresses[name] = local
        return local

    def token_matches(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(str(value).encode(), self.token.encode())

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """A websocket's Origin must be this page's own origin."""
        if not origin or not host_header:
            return False
        return origin.strip().lower() == f"http://{host_header.strip().lower()}"

    def mint_page(self, session: str) -> str:
        """A new page id, served to browser session ``session`` (the last ``PAGES_KEPT`` are remembered)."""
        page = secrets.token_urlsafe(16)
        self._pages[page] = session
        while len(self._pages) > PAGES_KEPT:
            self._pages.popitem(last=False)
        return page

    def page_session(self, page: str | None) -> str | None:
        """The browser session a page id was served to; None for an id this server did not serve."""
        return self._pages.get(page) if page else None

    def app_page(self, session: str) -> str:
        """trame's index.html with :data:`PAGE_SCRIPT` for a new page id served to ``session``."""
        import json

        html = self.index_file.read_text(encoding="utf-8")
        script = (PAGE_SCRIPT.replace("REASONS", json.dumps(IN_USE_REASONS))
                  .replace("PAGE_PARAMETER", PAGE_PARAMETER)
                  .replace("TAB_PARAMETER", TAB_PARAMETER)
                  .replace("IN_USE_CLOSE_CODE", str(IN_USE_CLOSE_CODE))
                  .replace("PAGE_ID", self.mint_page(session)))
        at = html.find("<script")
        at = at if at >= 0 else html.find("</head>")
        return html[:at] + script + html[at:] if at >= 0 else script + html

    @property
    def owned(self) -> bool:
        return self._owner is not None

    def owner_session(self) -> str | None:
        return self._owner_session if self._owner is not None else None

    async def acquire(self, key: object, session: str | None, grace_s: float = TAKEOVER_GRACE_S,
                      tab: str | None = None) -> bool:
        """Make ``key`` the owner, waiting up to ``grace_s`` for the current owner to leave; False if it did not.

        ``tab`` is the tab id the page sent (None: unknown). Taking over from another browser session, or
        from another tab of the same one, calls :attr:`on_new_session`; the same tab coming back (a reload)
        does not.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self._owner is not None:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._released.clear()
            try:
                await asyncio.wait_for(self._released.wait(), timeout=left)
            except asyncio.TimeoutError:
                return False
        self._owner, self._owner_session = key, session
        if self._last_session is not None and self.on_new_session is not None:
            other_tab = tab is not None and self._last_tab is not None and tab != self._last_tab
            if session != self._last_session or other_tab:
                self.on_new_session()
        self._last_session, self._last_tab = session, tab
        return True

    def release(self, key: object) -> None:
        if self._owner is key:
            self._owner, self._owner_session = None, None
            self._released.set()

    # ------------------------------------------------------------------ aiohttp
    def middleware(self):
        """The aiohttp middleware applying the rules to every request."""
        from aiohttp import web

        guard = self

        def forbidden(reason: str):
            return web.Response(status=403, text=FORBIDDEN_PAGE.format(reason=escape(reason)),
                                content_type="text/html", headers={"Cache-Control": "no-store"})

        @web.middleware
        async def check(request, handler):
            host = request.headers.get("Host")
            if not guard.host_allowed(host):
                return forbidden("This server answers only to its own address.")
            site = request.headers.get("Sec-Fetch-Site", "")
            if site in ("cross-site", "same-site") and request.headers.get("Sec-Fetch-Mode") != "navigate":
                return forbidden("Requests from other web sites are refused.")
            websocket = request.headers.get("Upgrade", "").lower() == "websocket"
            if websocket and not guard.origin_allowed(request.headers.get("Origin"), host):
                return forbidden("A websocket must come from this server's own page.")
            given = request.query.get(TOKEN_PARAMETER)
            fresh = guard.token_matches(given)
            if not fresh and not guard.token_matches(request.cookies.get(guard.cookie_name)):
                return forbidden("Open the URL that medsora serve printed when it started (it carries the "
                                 "access token).")
            session = request.cookies.get(guard.session_cookie) or secrets.token_urlsafe(16)
            new_session = guard.session_cookie not in request.cookies

            if websocket:
                key = object()
                tab = request.query.get(TAB_PARAMETER)
                tab = tab if tab and len(tab) <= 64 and tab.isascii() and tab.isalnum() else None
                if not await guard.acquire(key, session, tab=tab):
                    if guard.page_session(request.query.get(PAGE_PARAMETER)) != session:
                        return web.Response(status=409, text="in use by another browser window")
                    # A page this server gave to this browser: closed with a reason its script shows.
                    reason = "same-browser" if guard.owner_session() == session else "other-browser"
                    refused = web.WebSocketResponse()
                    await refused.prepare(request)
                    await refused.close(code=IN_USE_CLOSE_CODE, message=reason.encode())
                    return refused
                try:
                    return await handler(request)
                finally:
                    guard.release(key)

            if request.path in PAGE_PATHS and guard.owned and guard.owner_session() != session:
                response = web.Response(status=409, text=IN_USE_PAGE, content_type="text/html",
                                        headers={"Cache-Control": "no-store"})
            elif request.path == "/index.html" and guard.index_file is not None:
                response = web.Response(text=guard.app_page(session), content_type="text/html",
                                        headers={"Cache-Control": "no-store"})
            else:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:  # a redirect (/ -> index.html) is a response too
                    response = exc
                    if exc.status >= 400:
                        raise
                    guard._cookies(response, fresh, new_session, session)
                    raise
            guard._cookies(response, fresh, new_session, session)
            return response

        return check

    def _cookies(self, response, fresh: bool, new_session: bool, session: str) -> None:
        if fresh:
            response.set_cookie(self.cookie_name, self.token, httponly=True, samesite="Strict", path="/")
        if new_session:
            response.set_cookie(self.session_cookie, session, httponly=True, samesite="Strict", path="/")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")


#: The one message for every path the page may not load (missing, unreadable, outside the data root, a pipe...).
REFUSED_PATH = ("cannot be loaded: the page loads only readable image files and DICOM folders under the "
                "server's data root")
#: The message when the server was started without a data root.
NO_DATA_ROOT = ("loading from the server's disk is off; start medsora serve with --data-root FOLDER "
                "(or --volume) to allow loading the CTs under that folder")


def loadable_path(text, data_root: str | None, written=()) -> Path:
    """The real path of a file the page may load, else :class:`InputFileError`.

    Allowed: a readable regular file or DICOM series folder under ``data_root`` (a real path), or
    one of the real paths in ``written`` (files this server wrote). The path is resolved (links
    followed) before it is compared, nothing outside is opened, and every refusal, whatever its
    cause (missing, unreadable, outside, a pipe, a folder that is not a series), reads the same,
    so the page cannot learn what exists on the server's disk.
    """
    from ..validation import check_input_path

    text = str(text or "").strip()
    refused = InputFileError(f"{text}: {REFUSED_PATH}")
    if not text:
        raise refused
    path = Path(text).expanduser()
    real = os.path.realpath(path if path.is_absolute() else Path.cwd() / path)
    inside = data_root is not None and (real == data_root or real.startswith(data_root.rstrip("/") + "/"))
    if not inside and real not in written:
        if data_root is None:
            raise InputFileError(NO_DATA_ROOT)
        raise refused
    try:
        check_input_path(real)
    except InputFileError:
        raise refused from None
    return Path(real)
