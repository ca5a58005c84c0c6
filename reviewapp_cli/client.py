"""The REST client: one httpx client with the token, and errors the CLI can print."""

import os
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 60.0


class ApiError(Exception):
    """The server refused (4xx: `status`, `body`) or could not be reached (`status` 0)."""

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(message)
        self.status, self.body = status, body


class Client:
    def __init__(self, url: str | None = None, token: str | None = None):
        self.url = (url or os.environ.get("REVIEWAPP_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("REVIEWAPP_TOKEN", "")
        if not token:
            raise ApiError(0, "Set REVIEWAPP_TOKEN (an API token of the server) or pass --token.")
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=TIMEOUT_S,
        )

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"Cannot reach {self.url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _message(response.status_code, body), body)
        return body

    def get(self, path: str, **params) -> Any:
        return self._call("GET", path, params=params or None)

    def post(self, path: str, json: Any = None) -> Any:
        return self._call("POST", path, json=json)

    def upload(self, path: str, file: Path, **data) -> Any:
        with file.open("rb") as handle:
            return self._call("POST", path, files={"file": (file.name, handle)}, data=data)


def _message(status: int, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    if status == 400 and isinstance(body, dict):
        return "The server refused the request."
    return f"The server answered HTTP {status}."
