"""The web console served at /console/ on the peer's HTTP listener (see app.py)."""

from peer.http.console.app import CONSOLE_PATH, COOKIE, CSRF_HEADER, ConsoleSources, console_app

__all__ = ["CONSOLE_PATH", "COOKIE", "CSRF_HEADER", "ConsoleSources", "console_app"]
