"""Fetching a DAG's media URL to re-host it, without letting the URL reach internal addresses.

``LipSyncOperator(upload_public_urls=True)`` (:meth:`JoggHook.rehost_url`) downloads an http(s) URL
that comes from the DAG's input and uploads what it gets to Jogg's storage, where it is readable
again. Unchecked, that reads internal services (a cloud metadata endpoint on 169.254.169.254, an
admin page on 10.x.x.x) and publishes the answer. So, unless the connection's extra sets
``allow_private_media_urls``:

- every address the host name resolves to must be public: not private, loopback, link-local,
  shared (CGNAT, 100.64.0.0/10), multicast, reserved or unspecified, nor an IPv6 form of one of
  those (IPv4-mapped, 6to4, NAT64);
- the connection goes to the address that was checked, with the URL's host name kept for the
  ``Host`` header, TLS SNI and the certificate check, so a DNS server cannot answer the check with
  one address and the connection with another (DNS rebinding);
- redirects are followed here, one hop at a time, at most :data:`MAX_MEDIA_REDIRECTS`, each hop
  checked like the first;
- proxies from the environment are not used for these requests: a proxy would resolve the name
  itself, after the check.

Whatever the extra says, the answer must be media for its role: ``video/*`` for ``video_url``,
``audio/*`` for ``audio_url``, or ``application/octet-stream`` (or no type at all) when the URL's
file name has a video/audio extension. An HTML login page or a JSON error is refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.util import parse_url

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.media_inputs import AUDIO_TYPES, VIDEO_TYPES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from urllib3.connectionpool import HTTPConnectionPool

#: redirects followed for one media URL (each hop is checked like the first)
MAX_MEDIA_REDIRECTS = 5
#: shared address space (RFC 6598, carrier-grade NAT): not global, though not "private" either
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
#: the well-known NAT64 prefix (RFC 6052): the last 32 bits are the IPv4 address reached
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: types a server may send for a file it knows nothing about
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
#: ask for the bytes as stored: compressing media on the way gains nothing
_HEADERS = {"Accept-Encoding": "identity"}
_ROLE_PREFIXES = {"video_url": ("video/",), "audio_url": ("audio/",)}
_ROLE_SUFFIXES = {"video_url": VIDEO_TYPES.keys(), "audio_url": AUDIO_TYPES.keys()}


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an IP address is on the public internet (see the module documentation for what is not)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
            return is_public_address(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None and not is_public_address(embedded):
            return False
    elif ip in _SHARED:
        return False
    # spelled out: is_global alone lets multicast through, and its details changed across Pythons
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def shown_url(url: str) -> str:
    """A URL for messages: no credentials and no query string (signed URLs carry tokens there)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


class _PinnedPoolManager(PoolManager):
    """Connects to one checked address whatever host a URL names, keeping the name for SNI and TLS."""

    def __init__(self, host: str, address: str, **kwargs: Any) -> None:
        self._pinned_host = host
        self._address = address
        super().__init__(**kwargs)

    def connection_from_host(
        self,
        host: str | None,
        port: int | None = None,
        scheme: str | None = "http",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        if (host or "").strip("[]").lower() != self._pinned_host:
            # one pinned session per checked URL: any other host means a parser disagreed with us
            raise requests.exceptions.InvalidURL(f"host {host!r} was not the one checked")
        kwargs = dict(pool_kwargs or {})
        if scheme == "https":
            kwargs.update(server_hostname=self._pinned_host, assert_hostname=self._pinned_host)
        return super().connection_from_host(self._address, port, scheme, kwargs)


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, host: str, address: str) -> None:
        self._pin = (host, address)  # before super().__init__, which builds the pool manager
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        host, address = self._pin
        self.poolmanager = _PinnedPoolManager(
            host, address, num_pools=connections, maxsize=maxsize, block=block, **kwargs
        )


def _addresses_for(
    url: str, *, role: str, allow_private: bool, hop: int, action: str
) -> tuple[str, list[str]]:
    """Resolve ``url``'s host once and check every address: ``(host, addresses to connect to)``."""
    parsed = parse_url(url)  # how requests (urllib3) reads it
    host = (parsed.host or "").strip("[]").lower()
    if parsed.scheme not in ("http", "https") or not host:
        raise exc.JoggConfigError(f"{role} {shown_url(url)!r}: only http(s) URLs with a host can be fetched.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise exc.JoggConnectionError(
            f"Jogg {action}: cannot resolve host {host!r} ({error})", request_sent=False
        ) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise exc.JoggConnectionError(f"Jogg {action}: host {host!r} has no address", request_sent=False)
    if not allow_private:
        for address in addresses:
            if not is_public_address(address.split("%", 1)[0]):
                where = f"redirected (hop {hop}) to {shown_url(url)!r}" if hop else f"{shown_url(url)!r}"
                raise exc.JoggConfigError(
                    f"{role} {where}: host {host!r} resolves to {address}, which is not a public "
                    "address (private, loopback, link-local or otherwise internal). Media is only "
                    "fetched from public addresses, since what is fetched is uploaded to Jogg. If the "
                    'URL is meant to be internal, set "allow_private_media_urls": true in the '
                    "connection extra."
                )
    return host, addresses


def check_media_type(content_type: str | None, role: str, urls: tuple[str, ...]) -> None:
    """Raise :class:`JoggConfigError` unless an answer's ``Content-Type`` is media for ``role``."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    prefixes = _ROLE_PREFIXES.get(role, ("video/", "audio/"))
    if mime.startswith(prefixes):
        return
    suffixes = _ROLE_SUFFIXES.get(role, VIDEO_TYPES.keys() | AUDIO_TYPES.keys())
    names = [PurePosixPath(unquote(urlsplit(url).path)).suffix.lower() for url in urls]
    if mime in _UNTYPED and any(suffix in suffixes for suffix in names):
        return
    wanted = " or ".join(f"{prefix}*" for prefix in prefixes)
    raise exc.JoggConfigError(
        f"{role} {shown_url(urls[0])!r} answered with content type {mime or 'none'!r}, which is not media: "
        f"re-hosting needs {wanted}, or application/octet-stream for a file named "
        f"{', '.join(sorted(suffixes))}. Check that the URL serves the file itself, not a web page."
    )


def _send_pinned(
    session: requests.Session,
    request: requests.PreparedRequest,
    host: str,
    addresses: list[str],
    timeout: float,
    settings: Any,  # what Session.merge_environment_settings returns: verify, cert, stream, proxies
) -> requests.Response:
    """Send to the checked addresses in turn, as a plain connect would, until one answers."""

    def send(address: str) -> requests.Response:
        adapter = _PinnedAdapter(host, address)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session.send(request, allow_redirects=False, timeout=timeout, **settings)

    for address in addresses[:-1]:
        try:
            return send(address)
        except requests.ConnectionError:
            # e.g. a name with an IPv6 and an IPv4 address and a server on one of them; a GET of
            # media can be tried on the next checked address whatever went wrong
            session.get_adapter(request.url or "http://").close()
    return send(addresses[-1])


@contextlib.contextmanager
def open_media(
    url: str, *, role: str, allow_private: bool, timeout: float, action: str
) -> Iterator[requests.Response]:
    """
    ``GET`` a media URL with the checks above; yields the streamed final answer.

    A non-2xx answer is yielded as it is (the caller judges the status); a 2xx one has been checked
    to be media for ``role``. Raises :class:`JoggConfigError` for a refused address, redirect or
    content type, :class:`JoggConnectionError` when a host cannot be resolved, and lets
    ``requests`` errors through.
    """
    current = url
    for hop in range(MAX_MEDIA_REDIRECTS + 1):
        session = requests.Session()
        try:
            # check the URL as requests will send it (normalised, international names in xn-- form)
            request = session.prepare_request(requests.Request("GET", current, headers=_HEADERS))
            sent = request.url or current
            host, addresses = _addresses_for(
                sent, role=role, allow_private=allow_private, hop=hop, action=action
            )
            target = parse_url(sent)
            # the pool connects to the address, so say which site is meant (default ports implied)
            request.headers["Host"] = (
                f"{target.host}" if target.port is None else f"{target.host}:{target.port}"
            )
            # not through a proxy from the environment: the proxy would resolve the name itself
            no_proxies: dict[str, Any] = {"http": None, "https": None, "all": None}
            settings = session.merge_environment_settings(sent, no_proxies, True, None, None)
            response = _send_pinned(session, request, host, addresses, timeout, settings)
            try:
                if response.is_redirect:
                    location = urljoin(current, response.headers["Location"])
                    if urlsplit(location).scheme not in ("http", "https"):
                        raise exc.JoggConfigError(
                            f"{role} {shown_url(url)!r} redirected to a URL that is not http(s): "
                            f"{shown_url(location)!r}."
                        )
                    current = location
                    continue
                if 200 <= response.status_code < 300:
                    check_media_type(response.headers.get("Content-Type"), role, (url, current))
                yield response
                return
            finally:
                response.close()
        finally:
            session.close()
    raise exc.JoggConfigError(
        f"{role} {shown_url(url)!r} redirected more than {MAX_MEDIA_REDIRECTS} times; give the final URL."
    )
