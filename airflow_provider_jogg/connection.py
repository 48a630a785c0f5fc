"""An Airflow connection read into a :class:`JoggConnectionConfig`: defaults, extras, the base URL rules.

The connection is resolved and validated once per hook, poke or trigger run; every problem raises
:class:`~airflow_provider_jogg.exceptions.JoggConfigError` naming the connection and never the key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.registries import account_throttle

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Connection

    from airflow_provider_jogg.throttle import AccountThrottle


DEFAULT_CONN_ID = "jogg_default"
DEFAULT_BASE_URL = "https://api.jogg.ai"
#: seconds per HTTP request (connect + read) unless the connection's extra says ``timeout``
DEFAULT_TIMEOUT = 30.0
#: retries after the first attempt unless the connection's extra says ``max_retries``
DEFAULT_MAX_RETRIES = 3
#: first backoff in seconds; doubles per attempt (extra ``retry_backoff``)
DEFAULT_RETRY_BACKOFF = 1.0
#: seconds one call keeps waiting out HTTP 429 answers before it fails, unless the extra says
#: ``rate_limit_wait``: an account's rate limit is shared with every process and system using the key,
#: so a busy minute must not fail a task; the 429s of that time use none of ``max_retries``
DEFAULT_RATE_LIMIT_WAIT = 300.0
#: requests per second per account and process unless the extra says ``max_requests_per_second``:
#: one triggerer at Airflow's default capacity (1,000 triggers) polling every 10 s (the sensor's
#: default) stays on time under it
DEFAULT_MAX_REQUESTS_PER_SECOND = 100.0


@dataclass(frozen=True)
class JoggConnectionConfig:
    """
    Everything a client needs from an Airflow connection, resolved and validated once.

    :param base_url: API base URL with scheme and optional path prefix, no trailing slash
    :param api_key: the API key (kept out of ``repr``)
    :param api_platform: value for the ``x-api-platform`` header
    :param timeout: seconds per request
    :param max_retries: retries after the first attempt for requests that are safe to repeat
    :param retry_backoff: first backoff in seconds
    :param rate_limit_wait: seconds one call waits out HTTP 429 answers (they use none of
        ``max_retries`` meanwhile); 0: a 429 is retried like any other transient failure
    :param max_requests_per_second: process-wide request rate for this account (0: no limit)
    :param allow_private_media_urls: let :meth:`JoggHook.rehost_url` fetch media from private,
        loopback, link-local and other non-public addresses (off: such URLs are refused)
    """

    base_url: str
    api_key: str = field(repr=False)
    api_platform: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    rate_limit_wait: float = DEFAULT_RATE_LIMIT_WAIT
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    allow_private_media_urls: bool = False

    @property
    def key_id(self) -> str:
        """A short fingerprint that tells keys apart without revealing them (cache and throttle keys)."""
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:16]

    def headers(self) -> dict[str, str]:
        headers = {"x-api-key": self.api_key, "Accept": "application/json"}
        if self.api_platform:
            headers["x-api-platform"] = self.api_platform
        return headers

    def url(self, path: str) -> str:
        return self.base_url + path

    def throttle(self) -> AccountThrottle:
        """The account's process-wide throttle, at this connection's rate if it is the lowest."""
        return account_throttle(self.base_url, self.key_id, self.max_requests_per_second)

    @classmethod
    def from_connection(
        cls,
        conn_id: str,
        *,
        host: str | None,
        password: str | None,
        port: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> JoggConnectionConfig:
        """Validate one Airflow connection's fields. Raises :class:`JoggConfigError` naming the connection."""
        # forms may store extras with the "extra__jogg__" prefix; accept both spellings
        extra = {str(k).removeprefix("extra__jogg__"): v for k, v in (extra or {}).items()}
        # keys pasted from a mounted secret file usually end with a newline: it is not part of the key
        api_key = password.strip() if isinstance(password, str) else password
        if not api_key:
            raise exc.JoggConfigError(
                f"Connection {conn_id!r} has no API key: put your JoggAI API key in its password "
                "(shown as 'API Key' in the connection form)."
            )
        problem = header_value_problem(api_key)
        if problem:  # never the key itself in the message, only what is wrong with it
            raise exc.JoggConfigError(
                f"Connection {conn_id!r}: the API key (password) {problem}, so it cannot be sent in the "
                "x-api-key header. Copy the key again from the JoggAI dashboard."
            )
        allow_insecure = _extra_bool(conn_id, extra, "allow_insecure_http", False)
        platform = extra.get("api_platform")
        if platform is not None and not isinstance(platform, str):
            raise exc.JoggConfigError(f"Connection {conn_id!r}: extra 'api_platform' must be a string.")
        platform = (platform or "").strip() or None
        problem = header_value_problem(platform or "")
        if problem:
            raise exc.JoggConfigError(
                f"Connection {conn_id!r}: extra 'api_platform' {problem}, so it cannot be sent in the "
                f"x-api-platform header (got {platform!r})."
            )
        return cls(
            base_url=normalize_base_url(conn_id, host, port, allow_insecure_http=allow_insecure),
            api_key=api_key,
            api_platform=platform,
            timeout=_extra_number(conn_id, extra, "timeout", DEFAULT_TIMEOUT, minimum=0.001),
            max_retries=int(_extra_number(conn_id, extra, "max_retries", DEFAULT_MAX_RETRIES, integer=True)),
            retry_backoff=_extra_number(conn_id, extra, "retry_backoff", DEFAULT_RETRY_BACKOFF),
            rate_limit_wait=_extra_number(conn_id, extra, "rate_limit_wait", DEFAULT_RATE_LIMIT_WAIT),
            max_requests_per_second=_extra_number(
                conn_id, extra, "max_requests_per_second", DEFAULT_MAX_REQUESTS_PER_SECOND
            ),
            allow_private_media_urls=_extra_bool(conn_id, extra, "allow_private_media_urls", False),
        )


def header_value_problem(value: str) -> str | None:
    """What makes ``value`` unusable as an HTTP header value (``None``: nothing), never the value itself.

    Only printable ASCII without spaces is accepted: an API key or a platform name has no use for
    anything else, and ``requests`` and ``aiohttp`` reject or mangle the rest in different ways.
    """
    for char in value:
        if char in " \t":
            return "contains whitespace"
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return f"contains a control character (U+{ord(char):04X})"
        if ord(char) > 0x7E:
            return "contains a non-ASCII character"
    return None


#: a host name as both HTTP clients read it: dot-separated labels of letters, digits, '-' and '_'
_HOST_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.?")


def normalize_base_url(
    conn_id: str, host: str | None, port: int | None = None, *, allow_insecure_http: bool = False
) -> str:
    """
    The base URL from a connection's host: scheme required for http, ``https://`` assumed otherwise.

    A plain ``http://`` URL is refused for any host other than loopback unless
    ``allow_insecure_http`` is set: the API key would cross the network in clear text.

    The URL is read once, strictly, so that the host checked here is the host ``requests``
    (urllib3) and ``aiohttp`` (yarl) connect to: backslashes, whitespace, control and non-ASCII
    characters, a user name or password (``user:pass@``) and anything but a plain host name or IP
    address in the host are refused, since those are where URL parsers disagree.
    """
    raw = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in raw:
        raw = "https://" + raw
    shown = _redact_userinfo(raw)

    def invalid(problem: str) -> exc.JoggConfigError:
        return exc.JoggConfigError(
            f"Connection {conn_id!r}: base URL {shown!r} is invalid: {problem}. "
            "Use e.g. 'https://api.jogg.ai' or 'https://api.jogg.ai/open'."
        )

    for char in raw:
        if char == "\\":
            raise invalid("it contains a backslash")
        if char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F:
            raise invalid(f"it contains whitespace or a control character (U+{ord(char):04X})")
        if ord(char) > 0x7E:
            raise invalid("it contains a non-ASCII character (write an international name in its xn-- form)")
    if "@" in raw:
        # requests would send it as Basic auth and show it wherever the base URL is shown
        raise invalid(
            "it contains '@' (a user name or password?). The API authenticates with the key alone: "
            "remove the credentials from the host and put the API key in the connection's password"
        )
    try:
        parts = urlsplit(raw)
    except ValueError as error:  # e.g. an unbalanced '[' of an IPv6 address
        raise invalid(str(error)) from None
    if parts.scheme not in ("http", "https"):
        raise invalid(f"scheme {parts.scheme!r} is not http or https")
    if not parts.hostname:
        raise invalid("it has no host name")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise invalid("it must not have a query string or fragment")
    try:
        url_port = parts.port
    except ValueError:
        raise exc.JoggConfigError(
            f"Connection {conn_id!r}: base URL {shown!r} has an invalid port."
        ) from None
    hostname = parts.hostname
    if parts.netloc.startswith("["):
        if "%" in hostname:  # clients decode a zone id differently; an API never needs one
            raise invalid("an IPv6 zone id ('%') is not supported")
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise invalid(f"{hostname!r} is not an IPv6 address") from None
        netloc = f"[{hostname}]"
    elif _HOST_NAME.fullmatch(hostname):
        netloc = hostname
    else:
        raise invalid(f"{hostname!r} is not a host name or IP address")
    if url_port is not None:
        netloc = f"{netloc}:{url_port}"
    if parts.netloc.lower() != netloc:
        # e.g. "host:0080" or "host:": what is left over is read differently by different clients
        raise invalid(f"{parts.netloc!r} is not a plain host or host:port")
    if port and url_port is None:
        if not 0 < port < 65536:
            raise exc.JoggConfigError(f"Connection {conn_id!r}: port {port!r} is not a valid port.")
        netloc = f"{netloc}:{port}"
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(hostname):
        raise exc.JoggConfigError(
            f"Connection {conn_id!r}: base URL {shown!r} uses plain http:// for a host "
            "that is not loopback, which would send the API key in clear text. Use https://, or set "
            '"allow_insecure_http": true in the connection extra if this is really intended.'
        )
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _redact_userinfo(url: str) -> str:
    """The URL with anything before its last '@' in the part after the scheme hidden (credentials)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def _extra_number(
    conn_id: str,
    extra: Mapping[str, Any],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    integer: bool = False,
) -> float:
    value = extra.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < minimum or (integer and not number.is_integer()):
        kind = "a whole number" if integer else "a number"
        raise exc.JoggConfigError(
            f"Connection {conn_id!r}: extra {name!r} must be {kind} >= {minimum:g}, got {value!r}."
        )
    return number


def _extra_bool(conn_id: str, extra: Mapping[str, Any], name: str, default: bool) -> bool:
    value = extra.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise exc.JoggConfigError(f"Connection {conn_id!r}: extra {name!r} must be true or false, got {value!r}.")


def config_from_connection(conn: Connection, extra: Mapping[str, Any] | None = None) -> JoggConnectionConfig:
    """Validate an Airflow connection into a :class:`JoggConnectionConfig`."""
    return JoggConnectionConfig.from_connection(
        conn.conn_id,
        host=conn.host,
        password=conn.password,
        port=conn.port,
        extra=conn.extra_dejson if extra is None else extra,
    )


async def config_for_connection(conn_id: str) -> JoggConnectionConfig:
    """Look up and validate an Airflow connection without blocking the event loop; masks the key."""
    from airflow_provider_jogg._compat import aextra_dejson, aget_connection, amask_secret

    conn = await aget_connection(conn_id)
    config = config_from_connection(conn, extra=await aextra_dejson(conn))
    await amask_secret(config.api_key)
    return config
