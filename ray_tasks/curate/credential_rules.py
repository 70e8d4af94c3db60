"""Where credentials sit in real files, beyond detect-secrets' keyword patterns (issue 18).

* **structured config** (``.properties``, ``.ini``/``.cfg``, ``.env``, YAML, TOML, JSON, shell
  ``export``, Dockerfile ``ENV``, compose ``- KEY=value``): a secret-named key, any separator
  (``=``, ``:``, ``:=``, Dockerfile's space), a quoted or unquoted value; dotted, camelCase and
  nested names (``spring.datasource.password``, ``ossrhPassword``, ``auth: {password: ...}``).
* **XML**: ``<password>v</password>`` elements and ``name="...password" value="v"`` / ``>v<``
  properties (Maven settings, Hibernate, .NET ``appSettings``).
* **URLs**: credential query parameters (``key=``, ``api_key=``, ``access_token=``, ``sig=``...) in
  any file type: string literals, HTML attributes, docs.
* **HTTP authorization**: ``Authorization: Bearer|Basic|token ...`` however code spells it
  (header dicts, ``.header("Authorization", ...)``, ``curl -H``, fetch/axios options), API-key
  headers (``X-Api-Key``, ``Private-Token``) and ``curl -u user:password``.

Why hand-written: detect-secrets' keyword patterns need a quoted value in code and know neither
URLs nor headers; ``whispers`` (PyPI 2.4.0), the structured-file scanner the issue suggests, was
measured first: KEY+PASSWORD recall 0.19 / 0.18 / 0.25 on pii_labelled / pii_heldout /
pii_heldout2, nothing at all in Python or JavaScript files (the default corpus is Python), no
character offsets (a key, a value and a line number, to be searched for again), one subprocess per
folder on disk, and semgrep 1.85 + OpenTelemetry among its ~45 dependencies.

Each rule yields :class:`Candidate` spans; ray_tasks/curate/pii.py decides the type from the
name (password-like: ``<PASSWORD>``, else ``<KEY>`` if the value looks like a token) and drops
placeholders (``changeme``, ``<your-key>``, ``${VAR}``, ``os.environ[...]``), as for its other rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

PASSWORD_WORDS = r"pass(?:word|wd|phrase)?|pwd|contrase(?:ñ|n)a"
KEY_WORDS = r"secret|token|api_?key|apikey|auth_?key|access_?key|private_?key|credentials?"
# A name that ends in a secret word: ``password``, ``DB_PASS``, ``spring.mail.password``, ``dbPassword``.
SECRET_NAME = (
    r"(?:[\w.\-]*?[_.\-]|[A-Za-z0-9]*?[a-z0-9](?=[A-Z]))?"
    rf"(?i:{PASSWORD_WORDS}|{KEY_WORDS})(?![A-Za-z0-9])"
)
_VALUE = r"(?:(?P<q>[\"'`])(?P<qv>[^\"'`\r\n]+?)(?P=q)|(?P<uv>[^\s\"'`]+))"


@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    name: str
    """What names the value (``spring.datasource.password``, ``Authorization``): it decides the type."""
    detector: str
    token: bool = False
    """True where the context alone says credential (a header, ``?api_key=``): any token-like value counts."""


# ------------------------------------------------------------------ structured config
_CONFIG_ASSIGN = re.compile(rf"(?<![\w.\-$])(?P<name>{SECRET_NAME})[\"']?[ \t]*(?::=|=|:(?!:))[ \t]*{_VALUE}")
_DOCKER_ENV = re.compile(rf"(?m)^[ \t]*ENV[ \t]+(?P<name>{SECRET_NAME})[ \t]+{_VALUE}[ \t]*$")
_TRAILING_PUNCT = ",;"


def config_assignments(text: str) -> list[Candidate]:
    """Secret-named keys with a value, in a config-type file (whole text: these files are small)."""
    out = []
    for rx, detector in ((_CONFIG_ASSIGN, "config_assignment"), (_DOCKER_ENV, "dockerfile_env")):
        for m in rx.finditer(text):
            out.append(_value_candidate(m, detector))
    return out


def _value_candidate(m: re.Match, detector: str, token: bool = False) -> Candidate:
    group = "qv" if m.group("qv") is not None else "uv"
    start, end = m.span(group)
    if group == "uv":
        while end > start and m.string[end - 1] in _TRAILING_PUNCT:
            end -= 1  # ``{password: abc, user: x}``
    return Candidate(start, end, m.group("name"), detector, token)


# ------------------------------------------------------------------ XML
_XML_SUFFIXES = frozenset(".xml .config .plist .xaml .csproj .vbproj .pom .jelly .xhtml".split())
_XML_ELEMENT = re.compile(rf"<(?P<name>[\w.:\-]*?(?i:{PASSWORD_WORDS}|{KEY_WORDS}))>(?P<uv>[^<\s]+)</(?P=name)>")
_XML_PROPERTY = re.compile(
    rf"<[\w.:\-]+\s[^<>]*?\b(?:name|key|id)=\"(?P<name>[^\"<>]*?(?i:{PASSWORD_WORDS}|{KEY_WORDS}))\""
    r"(?:[^<>]*?\bvalue=\"(?P<qv>[^\"\s]+)\"|[^<>]*>(?P<xv>[^<\s]+)</)"
)


def is_xml(path: str) -> bool:
    return PurePosixPath(path.lower()).suffix in _XML_SUFFIXES


def xml_secrets(text: str) -> list[Candidate]:
    out = []
    for m in _XML_ELEMENT.finditer(text):
        out.append(Candidate(m.start("uv"), m.end("uv"), m.group("name"), "xml_element"))
    for m in _XML_PROPERTY.finditer(text):
        group = "qv" if m.group("qv") is not None else "xv"
        out.append(Candidate(m.start(group), m.end(group), m.group("name"), "xml_property"))
    return out


# ------------------------------------------------------------------ URLs and headers (one line at a time)
_QUERY_NAMES = (
    r"(?:[\w.\-]*[_.\-])?(?i:api[_-]?key|apikey|key|token|access[_-]?token|auth[_-]?token|auth|sig|signature"
    r"|secret|client[_-]?secret|appid|app[_-]?key|private[_-]?token)"
)
_URL_QUERY = re.compile(rf"[?&;](?P<name>{_QUERY_NAMES})=(?P<uv>[^&\s\"'<>#`\\|]+)")
_URL_QUERY_PASSWORD = re.compile(rf"[?&;](?P<name>(?i:{PASSWORD_WORDS}))=(?P<uv>[^&\s\"'<>#`\\|]+)")
_AUTH_SCHEMES = r"(?i:bearer|basic|token|digest|apikey|api-key|key|sso-key|ssws)"
_TOKEN = r"[A-Za-z0-9._~+/\-]{8,}=*"
_AUTHORIZATION = re.compile(
    rf"(?P<name>(?i:authorization))[\"'`]?\]?\s*(?:=>|[:=,])\s*[\"'`]?(?:{_AUTH_SCHEMES}\s+)?(?P<uv>{_TOKEN})(?=[\"'`\s,;)}}\]]|$)"
)
_BEARER = re.compile(rf"(?P<name>(?i:bearer))\s+(?P<uv>{_TOKEN})(?=[\"'`\s,;)}}\]]|$)")
_KEY_HEADER = r"(?i:x-[\w-]*?(?:key|token|secret|auth)|private-token|api-key|apikey|access-token|auth-token)"
_HEADER_QUOTED = re.compile(rf"[\"'](?P<name>{_KEY_HEADER})[\"']\s*(?:=>|[:,])\s*[\"'`](?P<uv>[^\"'`\s]{{8,}})[\"'`]")
_HEADER_PLAIN = re.compile(rf"(?<![\w-])(?P<name>{_KEY_HEADER})\s*:\s*(?P<uv>{_TOKEN})(?=[\"'\s]|$)")
_CURL_USER = re.compile(r"(?<![\w-])(?:-u|--user)[ =]+[\"']?(?P<user>[^\s:\"'$]+):(?P<uv>[^\s\"'@]+)")

# Which lines each rule reads, by a word pii.py's keyword automaton finds (lower case).
TRIGGERS: dict[str, tuple[str, ...]] = {
    "url_query": ("key=", "token=", "sig=", "signature=", "secret=", "appid=", "auth=", "pass=", "password=",
                  "passwd=", "pwd="),
    "authorization": ("authorization", "bearer"),
    "key_header": ("-key", "-token", "-secret", "x-auth", "apikey"),
    "curl_user": ("-u ", "--user"),
}


def line_candidates(line: str, offset: int, rules: set[str]) -> list[Candidate]:
    """The line rules named in ``rules`` (keys of TRIGGERS), spans shifted by ``offset``."""
    out = []
    if "url_query" in rules:
        out += [_shift(m, offset, "url_query", True) for m in _URL_QUERY.finditer(line)]
        out += [_shift(m, offset, "url_query") for m in _URL_QUERY_PASSWORD.finditer(line)]
    if "authorization" in rules:
        out += [_shift(m, offset, "authorization_header", True) for rx in (_AUTHORIZATION, _BEARER) for m in rx.finditer(line)]
    if "key_header" in rules:
        out += [_shift(m, offset, "key_header", True) for rx in (_HEADER_QUOTED, _HEADER_PLAIN) for m in rx.finditer(line)]
    if "curl_user" in rules and "curl" in line:
        out += [Candidate(offset + m.start("uv"), offset + m.end("uv"), "password", "curl_user") for m in _CURL_USER.finditer(line)]
    return out


def _shift(m: re.Match, offset: int, detector: str, token: bool = False) -> Candidate:
    return Candidate(offset + m.start("uv"), offset + m.end("uv"), m.group("name"), detector, token)
