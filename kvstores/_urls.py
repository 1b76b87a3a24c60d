"""URL handling shared by every backend: password masking and the options common to all schemes."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

from kvstores.errors import ConfigurationError

__all__ = [
    "check_options",
    "is_secret_name",
    "mask_secrets",
    "mask_url",
    "secret_values",
    "split_common_options",
]

MASK = "***"
# Option names whose values are credentials (AstraDB tokens, some drivers' passwords), and
# the endings of such names (libpq's ``sslpassword``, pymongo's
# ``tlsCertificateKeyFilePassword``, redis-py's ``ssl_password``, ``client_secret``, …).
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "token", "secret", "api_key", "apikey"})
_SECRET_ENDINGS = ("password", "passwd", "secret", "token", "apikey", "api_key")
COMMON_OPTIONS = ("namespace", "ttl", "timeout")


def is_secret_name(name: str) -> bool:
    """Whether an option or URL query parameter called `name` holds a credential."""
    lowered = name.lower().replace("-", "_")
    return lowered in _SECRET_PARAMS or lowered.endswith(_SECRET_ENDINGS)


def secret_values(options: Mapping[str, Any]) -> list[str]:
    """The values of the options in `options` that hold credentials (`is_secret_name`), for
    `mask_secrets`: a password given as a keyword never reaches the URL."""
    return [
        value
        for name, value in options.items()
        if isinstance(name, str) and is_secret_name(name) and isinstance(value, str) and value
    ]


def _spellings(secret: str) -> set[str]:
    """The ways a message may spell `secret`: as it is, percent-encoded (urllib's and HTML
    forms' ways), and escaped as Python's ``repr`` of it or of its UTF-8 bytes, or JSON,
    would (a driver quoting a value it refuses: ``Illegal header value b'…\\n'``)."""
    spellings = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "surrogatepass"))[2:-1],
        json.dumps(secret)[1:-1],
    }
    return {s for s in spellings if s}


def _url_secrets(url: str) -> list[str]:
    """The credentials `url` carries, each as it is written there and decoded: the password
    and the values of secret query parameters (`is_secret_name`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    for raw in parts.query.split("&"):
        name, _, value = raw.partition("=")
        if value and is_secret_name(unquote(name)):
            found += [value, unquote(value), unquote(value.replace("+", " "))]
    return found


def _secrets_of(url: str, extra: Iterable[str] = ()) -> list[str]:
    """Every spelling of the credentials of `url` and of `extra`, longest first (so that a
    secret containing another is masked whole)."""
    spellings: set[str] = set()
    for secret in [*_url_secrets(url), *extra]:
        if secret:
            spellings |= _spellings(secret)
    return sorted(spellings, key=len, reverse=True)


def mask_url(url: str) -> str:
    """Return `url` with its password and any credential query parameters replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparsable: show nothing rather than risk a secret
    if parts.password is None and not _url_secrets(url):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(name) for name, _ in pairs):
            query = urlencode([(n, MASK if is_secret_name(n) else v) for n, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _public_parts(url: str) -> list[str]:
    """The parts of `url` that are not credentials: user name, host, path, other query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    public = [parts.username or "", parts.hostname or "", unquote(parts.path)]
    public += [
        f"{name}={value}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not is_secret_name(name)
    ]
    return [part for part in public if part]


# A password this long does not occur in a message by chance: masked wherever it appears.
_UNMISTAKABLE = 8
# Where a password stands as a credential: ``user:pw@host``, or ``password=pw`` quoted or not.
_IN_USERINFO = r"(?<=:){secret}(?=@)"


def mask_secrets(text: str, url: str, secrets: Iterable[str] = ()) -> str:
    """Mask the credentials `url` carries, and `secrets` (given outside the URL: a token
    from the environment, a password keyword), wherever they appear in `text`, however
    spelled (as written in the URL, decoded, percent-encoded, escaped as ``repr`` or JSON
    would), and nothing else.

    The URL itself is replaced by its masked form. A password that also occurs in the URL's
    user name, host, path or other parameters (``admin:admin@…/admin``) is masked only where
    it stands as a credential (``:pw@``, ``password=pw``), so that the user and database
    names a driver's message quotes stay readable.
    """
    masked = mask_url(url)
    if masked != url:
        text = text.replace(url, masked)
    public = _public_parts(url)
    names = "|".join(sorted(_SECRET_PARAMS, key=len, reverse=True))
    for secret in _secrets_of(url, secrets):
        if secret not in text:
            continue
        if len(secret) >= _UNMISTAKABLE and not any(secret in part for part in public):
            text = text.replace(secret, MASK)
            continue
        if not any(secret in part for part in public):
            # A short password also occurs by chance inside words ("p" in "spawn"): mask it
            # where it stands alone.
            text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", MASK, text)
            continue
        escaped = re.escape(secret)
        text = re.sub(_IN_USERINFO.format(secret=escaped), MASK, text)
        text = re.sub(
            rf"((?:{names})['\"]?\s*[=:]\s*['\"]?){escaped}(?!\w)",
            lambda m: m[1] + MASK,
            text,
            flags=re.IGNORECASE,
        )
    return text


def _positive_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} in the URL is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name}={raw!r} in the URL must be a positive number of seconds")
    return value


def split_common_options(url: str) -> tuple[str, dict[str, Any]]:
    """Take ``namespace``, ``ttl`` and ``timeout`` out of a URL's query string.

    Returns the URL without them (every other parameter kept, in order, for the backend
    to read) and the parsed options.
    """
    base, _, rest = url.partition("?")
    query_string, hash_sign, fragment = rest.partition("#")
    if not query_string:
        return url, {}
    options: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name == "namespace":
            options["namespace"] = value
        elif name in ("ttl", "timeout"):
            options[name] = _positive_seconds(name, value)
        else:
            kept.append((name, value))
    query = urlencode(kept, quote_via=quote, safe="/:,")
    # Rebuilt by hand: urlunsplit would turn "sqlite:///x.db" into "sqlite:/x.db".
    return base + ("?" + query if query else "") + hash_sign + fragment, options


class CommonOptions(NamedTuple):
    """A URL without its ``namespace``/``ttl``/``timeout`` query parameters, and their values
    (a keyword's where one was given)."""

    url: str
    namespace: str | None
    ttl: float | None
    timeout: float | None


def merge_common_options(
    url: str, *, namespace: str | None, ttl: float | None, timeout: float | None
) -> CommonOptions:
    """`split_common_options`, with the keyword values (not `None`) winning over the URL's."""
    rest, in_url = split_common_options(url)
    return CommonOptions(
        rest,
        in_url.get("namespace") if namespace is None else namespace,
        in_url.get("ttl") if ttl is None else ttl,
        in_url.get("timeout") if timeout is None else timeout,
    )


def path_from_url(url: str) -> str:
    """The filesystem path of a ``scheme:///abs`` or ``scheme://rel/dir`` URL, percent-decoded."""
    parts = urlsplit(url)
    return unquote(parts.netloc + parts.path)


def check_options(backend: str, given: Iterable[str], known: Collection[str]) -> None:
    """Refuse option names (keyword arguments or URL query parameters) a backend does not take.

    A typo must not silently fall back to a default (``namespce=a`` writing into no
    namespace), so every backend checks the names it is given against the ones it knows.

    Raises:
        ConfigurationError: a name is not in `known`; the message names it, suggests the
            closest known name and lists them all.
    """
    unknown = [name for name in given if name not in known]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(known), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigurationError(
        f"unknown option{'s' if len(unknown) > 1 else ''} for the {backend} backend: "
        f"{', '.join(hints)}; known options: {', '.join(sorted(known))}"
    )


def store_options(
    backend: str,
    url: str,
    options: dict[str, Any],
    *,
    query: Collection[str] = (),
    keywords: Collection[str] = (),
) -> tuple[str, dict[str, Any]]:
    """A backend's `from_url` preamble: the common options out of `url`, overridden by `options`.

    Returns the URL without ``namespace``/``ttl``/``timeout`` and the merged options.

    Raises:
        ConfigurationError: a query parameter other than the common ones and `query`, or an
            option other than the common ones and `keywords`.
    """
    rest, merged = split_common_options(url)
    check_options(
        backend, [name for name, _ in parse_qsl(urlsplit(rest).query)], {*COMMON_OPTIONS, *query}
    )
    merged.update(options)
    check_options(backend, merged, {*COMMON_OPTIONS, *keywords})
    return rest, merged
