"""PII redaction: emails, keys, passwords and public IP addresses become special tokens.

What StarCoder2 ran (its paper, https://arxiv.org/abs/2402.19173, §3.2) is the StarPII NER model plus
fixed redaction rules. No model can be downloaded here, so this is the older
BigCode pipeline (https://github.com/bigcode-project/bigcode-dataset/tree/main/pii) brought up to date, with the StarPII redaction rules:

* **keys**: detect-secrets' maintained format plugins (AWS, GitHub, GitLab,
  Slack, Stripe, Twilio, SendGrid, JWT, npm, PyPI, OpenAI, Azure, ...) and its
  two entropy plugins, with its own heuristic filters (UUID, templated,
  sequential, id strings, lock files) and its gibberish model; plus the seed's
  hash rules (hex values are digests unless the line names a key).
* **passwords**: detect-secrets' keyword patterns (per file type: quoted in
  code, unquoted in config files); the keyword decides ``<PASSWORD>`` versus
  ``<KEY>``. Written here, for what those patterns miss: typed declarations,
  camelCase names, connection strings, and URL credentials (detect-secrets'
  basic-auth pattern refuses ``!$&...`` in passwords).
* **where real code keeps secrets** (issue 18): provider key formats that detect-secrets
  lacks (ray_tasks/curate/key_formats.py: Hugging Face, Anthropic, Shopify, DigitalOcean,
  rubygems, webhooks, ...) and the config/XML/URL-query/Authorization-header rules of
  ray_tasks/curate/credential_rules.py; one Aho-Corasick pass finds where their prefixes and
  trigger words occur, so text without them costs nothing more. Placeholders
  (``changeme``, ``${VAR}``, ``<your-key>``, ``dummy-...``), publishable keys (``pk_live_``)
  and SSH public-key blobs stay.
* **emails, IPv4, IPv6**: hand-written, because detect-secrets has no email
  detector and its IP plugin is IPv4-only without the seed's false-positive
  rules (version strings, DNS servers, private ranges). ``ipaddress`` decides
  what is public.
* **names** are out of scope: only a NER model finds them with useful
  precision, so ``<NAME>`` is never emitted here.

Replacements follow StarPII: ``<EMAIL>``, ``<KEY>``, ``<PASSWORD>`` (special
tokens of the tokenizer), and a public IP becomes one of five fixed private
addresses, chosen by a hash of the original so that one address always maps
to the same replacement (within a file, and across runs: DVC hashes outputs).

    from ray_tasks.curate.params import PiiParams
    from ray_tasks.curate.pii import redact
    text, findings = redact(source_text, "settings.py", PiiParams())

Settings (which types, the entropy bars) are ``curate.pii`` in params.yaml
(``PiiParams`` in ray_tasks/curate/params.py): every function here takes that object.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Iterable

import pyarrow as pa

from ray_tasks.curate import credential_rules, key_formats
from ray_tasks.curate.params import PiiParams
from ray_tasks.curate.filters import set_column

EMAIL, IP_ADDRESS, KEY, PASSWORD = "EMAIL", "IP_ADDRESS", "KEY", "PASSWORD"
PII_TYPES = (EMAIL, IP_ADDRESS, KEY, PASSWORD)
PLACEHOLDERS = {EMAIL: "<EMAIL>", KEY: "<KEY>", PASSWORD: "<PASSWORD>"}

# StarPII's replacement lists (pii/ner/pii_redaction/utils.py in https://github.com/bigcode-project/bigcode-dataset).
IPV4_REPLACEMENTS = ("172.16.31.10", "172.16.58.3", "172.16.17.32", "192.168.127.12", "192.168.3.11")
IPV6_REPLACEMENTS = (
    "fd00:c2b6:b24b:be67:2827:688d:e6a1:6a3b",
    "fd00:a516:7c1b:17cd:6d81:2137:bd2a:2c5b",
    "fc00:e968:6179::de52:7100",
    "fc00:db20:35b:7399::5",
    "fdf8:f53e:61e4::18",
)
# Popular public DNS resolvers are configuration, not personal data (StarPII keeps them).
POPULAR_DNS = frozenset({
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "76.76.19.19", "76.223.122.150", "9.9.9.9",
    "149.112.112.112", "208.67.222.222", "208.67.220.220", "8.26.56.26", "8.20.247.20",
    "94.140.14.14", "94.140.15.15",
})


@dataclass(frozen=True)
class Finding:
    type: str
    start: int
    end: int
    value: str
    detector: str
    """Which rule or detect-secrets plugin found it (for audits and the ``--json`` CLI)."""

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- emails
# BigScience-style email regex. The look-behind makes each token start at most
# once (linear time); a top-level domain must be letters, which rules out
# ``pkg@1.2.3`` (npm versions) and ``@decorator``s. Asset names like
# ``icon@2x.png`` are ruled out by the file-extension "TLD" list below.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_EMAIL_QUICK = re.compile(r"@[A-Za-z0-9-]+\.")
_FILE_EXT_TLDS = frozenset(
    "png jpg jpeg gif svg webp ico bmp js mjs ts tsx jsx py rb go rs java kt c h cc cpp hpp cs php css scss "
    "html htm json yaml yml toml ini cfg txt md rst xml sh so dll exe zip gz tar whl lock map wasm pdf".split()
)
# Domains reserved for documentation (RFC 2606, RFC 6761): nobody's mailbox.
_RESERVED_DOMAIN = re.compile(r"(?:^|\.)example\.(?:com|net|org)$|\.(?:example|test|invalid|localhost)$")
# Generic service addresses (SSH remotes of code hosts), not anyone's mailbox.
_SERVICE_EMAILS = frozenset({"git@github.com", "git@gitlab.com", "git@bitbucket.org", "git@ssh.dev.azure.com"})


def find_emails(text: str) -> list[Finding]:
    if "@" not in text:
        return []
    out, done = [], 0
    for at in _EMAIL_QUICK.finditer(text):
        # Run the full pattern only around an ``@`` followed by a dotted domain (local parts are <= 64).
        if at.start() < done:
            continue
        m = _EMAIL.search(text, max(done, at.start() - 64), at.end() + 255)
        if not m:
            continue
        done = m.end()
        value = m.group()
        domain = value.rsplit("@", 1)[1].lower()
        if domain.rsplit(".", 1)[1] in _FILE_EXT_TLDS or value.lower() in _SERVICE_EMAILS or _RESERVED_DOMAIN.search(domain):
            continue
        if text.endswith("://", 0, m.start()):
            continue  # ``ftp://anonymous@host``: a URL's user name, not a mailbox
        if m.start() and text[m.start() - 1] == ":" and not text.endswith("mailto:", 0, m.start()):
            continue  # ``user:pass@host``: URL credentials (a password finding's business), not a mailbox
        out.append(Finding(EMAIL, m.start(), m.end(), value, "email_regex"))
    return out


# --------------------------------------------------------------------------- IP addresses
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not preceded by a word char or dot (``v1.2.3.4``, OIDs), not followed by more dotted digits.
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?!\w)")
_IPV4_QUICK = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
# Candidate IPv6: hex groups with >= 2 colons; ``ipaddress`` decides validity.
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|(?:\d{1,3}\.){3}\d{1,3})(?![\w:])")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]*:")
_VERSION_CONTEXT = re.compile(r"(?i)(?:version|release|build)\w*\W{0,4}$|\bv(?:er)?\W{0,4}$|[=<>~!]=\s*$")
_VERSION_SUFFIX = re.compile(r"-(?!\d{1,3}\.\d)[A-Za-z0-9]")
_DNS_CONTEXT = re.compile(r"(?i)dns|server")


def find_ip_addresses(text: str) -> list[Finding]:
    out = []
    for candidate in _IPV4_QUICK.finditer(text):  # a plain pattern Python's re scans fast
        m = _IPV4.match(text, candidate.start())
        if m and _keep_ipv4(text, m):
            out.append(Finding(IP_ADDRESS, m.start(), m.end(), m.group(), "ipv4_regex"))
    if ":" in text and _IPV6_HINT.search(text):
        for m in _IPV6.finditer(text):
            value = m.group()
            if value.count(":") >= 2 and _is_public(value):
                out.append(Finding(IP_ADDRESS, m.start(), m.end(), value, "ipv6_regex"))
    return out


def _keep_ipv4(text: str, m: re.Match) -> bool:
    value = m.group()
    if value in POPULAR_DNS or not _is_public(value):
        return False
    line_start = max(text.rfind("\n", 0, m.start()) + 1, m.start() - 40)  # the words just before it
    if _VERSION_CONTEXT.search(text, line_start, m.start()):
        return False  # ``version = 2.31.0.1``, ``pkg==3.4.5.6``
    if _VERSION_SUFFIX.match(text, m.end()):
        return False  # ``Guile 3.0.5.130-5a1e7``, ``1.2.3.4-rc1`` (a range ``-1.2.3.9`` is still an address)
    if len(value) == 7:
        # The seed's rule: ``x.x.x.x`` is a version number unless DNS/server talk is near.
        return bool(_DNS_CONTEXT.search(text, max(0, m.start() - 100), m.end() + 100))
    return True


def _is_public(value: str) -> bool:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def ip_replacement(value: str) -> str:
    """One of StarPII's private addresses, fixed per original (stable across files and runs)."""
    pool = IPV6_REPLACEMENTS if ":" in value else IPV4_REPLACEMENTS
    return pool[int.from_bytes(hashlib.sha256(value.encode()).digest()[:4], "big") % len(pool)]


# --------------------------------------------------------------------------- keys and passwords
# Candidate lines for detect-secrets: running ~25 plugins on every line is what
# makes it slow, so lines are first screened: a run of >= 12 token characters
# holding a digit (every format plugin's token, and all but ~0.4% of random
# base64 keys of 32 chars), or a keyword of the keyword/Cloudant/IBM plugins,
# or a URL (credentials).
_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{12,}")
# Keywords of detect-secrets' keyword/Cloudant/IBM/SoftLayer plugins and of _EXTRA_KEYWORD_PATTERNS.
# ``token`` is not one: a token value is a digit-bearing run, found by _RUN.
_KEY_NAMES = ("api", "auth", "service", "account", "db", "database", "priv", "private", "client")
_CANDIDATE_WORDS = ("pass", "pwd", "secret", "contrase", "cloudant", "ibm", "softlayer", "://") + tuple(
    f"{name}{sep}key" for name in _KEY_NAMES for sep in ("", "_", "-")
)
_CANDIDATE_KEYWORD = re.compile("(?i)" + "|".join(re.escape(w) for w in _CANDIDATE_WORDS))
_DIGITS = frozenset("0123456789")
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_KEY_PREFIX = re.compile(r"[A-Za-z_]+=(?=.{8})")
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-+/=.]+")
# Credentials in a URL. detect-secrets' BasicAuth pattern refuses RFC 3986 sub-delims
# (``!$&'()*+,;=``) in the password, which real passwords use; this one does not.
_URL_CREDENTIALS = re.compile(r"://[^\s:/@{}\"'<>]+:([^\s/@{}\"'<>]+)@[\w.\-]+")
# What detect-secrets' keyword patterns lack (written here): typed declarations
# (``const API_KEY: &str = "..."`` in Rust/TS/Kotlin/Swift), R's ``<-``, the short names
# ``pass``/``token``/``passphrase`` as the last part of a name (``$pass``, ``auth_token``,
# camelCase ``dbPassword``), and connection strings (``...;User ID=sa;Password=...;``).
_SECRET_NAME = (
    r"\$?(?:\w*?[_\-]|[A-Za-z0-9]*?[a-z0-9](?=[A-Z]))?"
    r"(?i:pass(?:word|wd|phrase)?|pwd|token|secret|api_?key|auth_?key|private_?key)(?![A-Za-z0-9])"
)
_EXTRA_KEYWORD_PATTERNS = (
    (re.compile(rf"(?<![\w.])({_SECRET_NAME})\s*:\s*&?[\w<>\[\].]+\s*=\s*([\"'`])([^\"'`\s]+)\2"), 3),
    (re.compile(rf"(?<![\w.])({_SECRET_NAME})\s*(?:=|:=|<-|=>)\s*([\"'`])([^\"'`\s]+)\2"), 3),
    (re.compile(r"(?i)(?<![\w.])(password|pwd)\s*=\s*([^;\"'\s{}$<>]+);"), 2),
)
_TRAILING_COMMENT = re.compile(r"\s+(?:#|;|//).*$")
_PASSWORD_KEYWORD = re.compile(r"(?i)pass|pwd|contrase")
_KEY_CONTEXT = re.compile(r"(?i)key|token|secret|auth|api|credential|access|signature|salt|bearer|passw|pwd")
_HASH_CONTEXT = re.compile(r"(?i)sha|md5|hash|digest|checksum|integrity|fingerprint|commit|byte|\brev|crc|etag|uuid|guid|nonce|color|colour")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
    r"(?P<body>.*?)-----END \1-----",
    re.S,
)
# printf (``%s``, ``%(name)s``, ``%.2f``; no width digits, so percent-encoding ``%3D`` is not one),
# ``{}`` templates, masks.
_FORMAT_PLACEHOLDER = re.compile(
    r"%(?:\(\w+\))?[-+ #0]*(?:\.\d+)?[sdrif](?![A-Za-z0-9])|\{\w*\}|^[\W_]*(?:\*{3,}|[xX]{3,}|•{3,}|\.{3})[\W_]*$"
)
# Values and names that say they are not real: test fixtures named as such (``FAKE_PASSWORD``,
# ``"dummy-token"``), samples. A real-looking password in a tests/ file is still redacted.
_FAKE_VALUE = re.compile(r"(?i)dummy|fake|example|sample|placeholder|not[-_]?a[-_]?secret|^test[-_]|^your[-_]")
_FIXTURE_NAME = re.compile(r"(?i)(?:fake|dummy|mock|example|sample)_")
_PLACEHOLDER_VALUES = frozenset(
    "password passwd pwd secret none null nil true false changeme change_me yourpassword your_password "
    "your-password mypassword my_password example dummy redacted hidden todo fixme <password> <key> "
    "api_key apikey secret_key token".split()
)
# Config files take unquoted values (``password: hunter2``): detect-secrets' config patterns.
_CONFIG_NAMES = re.compile(
    r"(?i)(^|/)(\.env(\.\w+)?|[^/]*\.env|dockerfile|\.pypirc|\.npmrc|\.netrc|\.pgpass|\.git-credentials"
    r"|[^/]*\.(cfg|conf|cnf|ini|properties|toml|ya?ml|env|sh|bash|zsh))$"
)


def find_secrets(text: str, path: str, params: PiiParams) -> list[Finding]:
    """Keys and passwords: detect-secrets' plugins and filters line by line, then the provider
    formats (ray_tasks/curate/key_formats.py) and the config/URL/header rules
    (ray_tasks/curate/credential_rules.py) where the keyword pass saw their words."""
    from detect_secrets.filters.heuristic import is_lock_file

    if is_lock_file(path or "x"):
        return []  # package-lock.json & co.: integrity hashes, never secrets (detect-secrets' own rule)
    hits = _Hits(text)
    hash_heavy = _Lazy(lambda: _hash_heavy(text))
    out: list[Finding] = []
    for start, end in hits.lines(hits.candidates):
        body = text[start:end].rstrip("\r")  # detect-secrets' patterns would take a newline into a value
        if len(body) > 12:
            out.extend(_secrets_in_line(body, start, path, params, hash_heavy))
    out.extend(_private_key_blocks(text))
    out.extend(Finding(KEY, h.start, h.end, text[h.start : h.end], f"key_format:{h.name}")
               for h in key_formats.find_at(text, hits.prefixes))
    out.extend(_rule_findings(text, path, hits))
    return out


class _Hits:
    """One Aho-Corasick pass over the lower-cased text: where the candidate keywords, the provider
    prefixes and the line rules' trigger words occur. Runs of >= 12 token characters holding a
    digit (every format plugin's token, and all but ~0.4% of random base64 keys of 32 chars) are
    candidates too; both scans stay in C."""

    def __init__(self, text: str):
        self.text = text
        lower = text.lower()
        if len(lower) != len(text):  # a few code points lower-case to two ("İ"): keep offsets aligned
            lower = text.translate(_ASCII_LOWER)
        self.lower = lower
        self.candidates = [m.start() for m in _digit_runs(text)]
        self.prefixes: list[tuple[int, str]] = []
        self.rules: dict[str, list[int]] = {}
        others = []
        for end, (word, candidate, roles) in _keyword_automaton().iter(lower):
            if candidate:
                self.candidates.append(end)
            if roles:
                others.append((end, word, roles))
        for end, word, roles in others:  # few: prefixes and trigger words
            for role in roles:
                if role == _PREFIX:
                    self.prefixes.append((end, word))
                else:
                    self.rules.setdefault(role, []).append(end)

    def lines(self, positions: Iterable[int]) -> list[tuple[int, int]]:
        """(start, end) of each line holding one of ``positions``, in order, each once."""
        text, lines, done = self.text, [], -1
        for pos in sorted(positions):
            if pos < done:
                continue
            start = text.rfind("\n", 0, pos) + 1
            end = text.find("\n", pos)
            done = len(text) if end == -1 else end
            lines.append((start, done))
        return lines


_CANDIDATE, _PREFIX = "candidate", "prefix"


def _rule_findings(text: str, path: str, hits: _Hits) -> list[Finding]:
    """credential_rules' candidates as findings: typed by their name, placeholders and fixtures dropped."""
    candidates: list[credential_rules.Candidate] = []
    if _CONFIG_NAMES.search(path or ""):
        candidates += credential_rules.config_assignments(text)
    if credential_rules.is_xml(path or "") and "</" in text:
        candidates += credential_rules.xml_secrets(text)
    by_line: dict[tuple[int, int], set[str]] = {}
    for rule, positions in hits.rules.items():
        for span in hits.lines(positions):
            by_line.setdefault(span, set()).add(rule)
    for (start, end), rules in by_line.items():
        candidates += credential_rules.line_candidates(text[start:end], start, rules)
    return [f for f in map(lambda c: _candidate_finding(text, c), candidates) if f]


def _candidate_finding(text: str, c: credential_rules.Candidate) -> Finding | None:
    from detect_secrets.filters.heuristic import is_indirect_reference

    value = text[c.start : c.end]
    if not value or _is_placeholder(value) or _FIXTURE_NAME.match(c.name) or is_indirect_reference(value):
        return None
    if _PASSWORD_KEYWORD.search(c.name) and not c.token:
        return Finding(PASSWORD, c.start, c.end, value, c.detector)
    if len(value) > 8 and (_looks_random(value) or c.token and _is_token_like(value)):
        return Finding(KEY, c.start, c.end, value, c.detector)
    return None


def _is_token_like(value: str) -> bool:
    """A value in a credential slot (header, ``?api_key=``): letters and digits mixed, whatever the format."""
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _digit_runs(text: str) -> Iterable[re.Match]:
    return (m for m in _RUN.finditer(text) if not _DIGITS.isdisjoint(m.group()))


@lru_cache(maxsize=1)
def _keyword_automaton():
    """Word -> (word, is a candidate keyword, other roles: provider prefix, line rules' triggers)."""
    import ahocorasick

    roles: dict[str, set[str]] = {}
    for word in _CANDIDATE_WORDS:
        roles.setdefault(word, set()).add(_CANDIDATE)
    for prefix in key_formats.by_prefix():
        roles.setdefault(prefix, set()).add(_PREFIX)
    for rule, words in credential_rules.TRIGGERS.items():
        for word in words:
            roles.setdefault(word, set()).add(rule)
    automaton = ahocorasick.Automaton()
    for word, word_roles in roles.items():
        automaton.add_word(word, (word, _CANDIDATE in word_roles, tuple(sorted(word_roles - {_CANDIDATE}))))
    automaton.make_automaton()
    return automaton


class _Lazy:
    """A value computed on first use (the file-level hash rule is only needed for entropy hits)."""

    def __init__(self, fn):
        self.fn, self.done, self.value = fn, False, None

    def __call__(self):
        if not self.done:
            self.value, self.done = self.fn(), True
        return self.value


def _secrets_in_line(line: str, offset: int, path: str, params: PiiParams, hash_heavy: _Lazy) -> list[Finding]:
    plugins = _plugins(params.base64_entropy_limit, params.hex_entropy_limit)
    found: list[Finding] = []
    if next(_digit_runs(line), None):
        for plugin in plugins.formats:
            found.extend(_format_findings(plugin, line, offset))
        for plugin in plugins.entropy:
            for value in set(plugin.analyze_string(line)):
                # n characters carry at most log2(n) bits each: skip values that cannot pass.
                if math.log2(len(value)) > plugin.entropy_limit and plugin.calculate_shannon_entropy(value) > plugin.entropy_limit \
                        and _is_key_like(value, _around(line, value), hash_heavy):
                    found.extend(_located(line, offset, value, KEY, f"detect-secrets:{type(plugin).__name__}"))
    if "://" in line:
        for m in _URL_CREDENTIALS.finditer(line):
            value = m.group(1)
            if not _is_placeholder(value):
                found.append(Finding(PASSWORD, offset + m.start(1), offset + m.end(1), value, "url_credentials"))
    found.extend(_keyword_secrets(line, offset, path))
    return found


def _format_findings(plugin, line: str, offset: int) -> list[Finding]:
    """A format plugin's hits with their spans.

    ``analyze_string`` yields regex *groups* (GitHub's yields just ``ghp``), so the
    plugin's own patterns are run here: the longest group of >= 8 chars is the
    secret, else the whole match; a hit then extends to the end of its token
    (JWT's pattern stops before the signature)."""
    from detect_secrets.plugins.base import RegexBasedDetector

    name = f"detect-secrets:{type(plugin).__name__}"
    spans: list[tuple[int, int]] = []
    if type(plugin).analyze_string is not RegexBasedDetector.analyze_string:  # own validation (JWT)
        for value in set(plugin.analyze_string(line)):
            i = line.find(value)
            while value and i != -1:
                spans.append((i, i + len(value)))
                i = line.find(value, i + len(value))
    else:
        for rx in plugin.denylist:
            for m in rx.finditer(line):
                groups = [g for g in range(1, (rx.groups or 0) + 1) if m.group(g) and len(m.group(g)) >= 8]
                g = max(groups, key=lambda g: len(m.group(g))) if groups else 0
                start, end = m.span(g)
                prefix = _KEY_PREFIX.match(line, start, end)  # ``AccountKey=<value>``
                spans.append((prefix.end() if prefix else start, end))
    out = []
    for start, end in spans:
        m = _TOKEN_TAIL.match(line, end)
        end = m.end() if m else end
        if end - start >= 8:
            out.append(Finding(KEY, offset + start, offset + end, line[start:end], name))
    return out


def _keyword_secrets(line: str, offset: int, path: str) -> list[Finding]:
    """detect-secrets' keyword patterns, with the keyword kept: it decides PASSWORD or KEY."""
    from detect_secrets.filters.heuristic import is_indirect_reference

    if not _CANDIDATE_KEYWORD.search(line):
        return []
    out = []
    patterns = [(p, g, "detect-secrets:KeywordDetector") for p, g in _keyword_patterns(path)]
    patterns += [(p, g, "keyword_extra") for p, g in _EXTRA_KEYWORD_PATTERNS]
    for pattern, group, detector in patterns:
        for m in pattern.finditer(line):
            if is_indirect_reference(line):
                return []  # ``password = os.environ["PASSWORD"]``
            value, end = m.group(group), m.end(group)
            if value and _CONFIG_NAMES.search(path or "") and _TRAILING_COMMENT.search(value):
                value = _TRAILING_COMMENT.sub("", value)  # ``password: hunter2  # prod``
                end = m.start(group) + len(value)
            if not value or _is_placeholder(value) or any(c.isspace() for c in value):
                continue  # prose (``"Enter your password"``), templates, placeholders
            keyword = m.group(0).replace(value, " ")
            if _PASSWORD_KEYWORD.search(keyword):
                kind = PASSWORD
            elif len(value) > 8 and _looks_random(value):
                kind = KEY
            else:
                continue
            out.append(Finding(kind, offset + m.start(group), offset + end, value, detector))
    return out


def _private_key_blocks(text: str) -> list[Finding]:
    """PEM private-key bodies. detect-secrets' PrivateKeyDetector flags only the header line."""
    if "PRIVATE KEY" not in text:
        return []
    return [
        Finding(KEY, m.start("body"), m.end("body"), m.group("body"), "private_key_block")
        for m in _PRIVATE_KEY.finditer(text)
        if m.group("body").strip()
    ]


def _located(line: str, offset: int, value: str, kind: str, detector: str) -> list[Finding]:
    out, i = [], line.find(value)
    while i != -1:
        out.append(Finding(kind, offset + i, offset + i + len(value), value, detector))
        i = line.find(value, i + len(value))
    return out


def _around(line: str, value: str, width: int = 120) -> str:
    """The part of a line around a value: context rules look there, so that a
    100 kB JSON line with many values is not rescanned whole for each one."""
    i = max(line.find(value), 0)
    return line[max(0, i - width) : i + len(value) + width]


def _is_key_like(value: str, line: str, hash_heavy: _Lazy) -> bool:
    """Entropy hits that are keys, not digests, UUIDs, ids or sequences (seed + detect-secrets rules)."""
    from detect_secrets.filters.heuristic import is_likely_id_string, is_potential_uuid, is_sequential_string

    if len(value) <= 8 or is_potential_uuid(value) or is_sequential_string(value) or is_likely_id_string(value, line):
        return False
    if value.startswith(_PUBLIC_KEY_PREFIXES):
        return False
    key_context = bool(_KEY_CONTEXT.search(line))
    if _HASH_CONTEXT.search(line):
        # ``sha256 = "9f86d0..."``, ``"integrity": "sha512-..."`` are digests; ``hmac_key = ...``
        # on a line that also says "bytes" is still a key, if the assigned name is not digest-like.
        if not key_context or _HASH_CONTEXT.search(_assigned_name(line)):
            return False
    if not key_context and hash_heavy():
        return False
    if all(c in "0123456789abcdefABCDEF" for c in value):
        # Hex has too small an alphabet for the gibberish model (detect-secrets says so too):
        # a hex value is a digest unless the line names a key.
        return key_context
    return _looks_random(value)


# Keys published by design: Stripe publishable keys, Mapbox public tokens, SSH public-key blobs.
_PUBLIC_KEY_PREFIXES = ("pk_live_", "pk_test_", "pk.eyJ", "AAAAC3NzaC1", "AAAAB3NzaC1", "AAAAE2VjZHNh")


def _assigned_name(line: str) -> str:
    m = re.match(r"\s*[\"']?([\w.\-]+)", line)
    return m.group(1) if m else ""


def _hash_heavy(text: str) -> bool:
    """The seed's file rule: more than 2% of lines mention sha/hash means a file of digests."""
    lines = text.count("\n") + 1
    if lines < 10:
        return False
    return len(re.findall(r"(?im)^.*(?:sha|hash).*$", text)) > 0.02 * lines


def _looks_random(value: str) -> bool:
    if all(c in "0123456789abcdefABCDEF-" for c in value):
        return _shannon(value) > 3.0
    return _gibberish().is_gibberish(value.lower())


def _shannon(value: str) -> float:
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


def _is_placeholder(value: str) -> bool:
    from detect_secrets.filters.heuristic import is_prefixed_with_dollar_sign, is_templated_secret

    v = value.strip()
    return (
        len(v) < 4
        or v.lower() in _PLACEHOLDER_VALUES
        or is_templated_secret(v)
        or is_prefixed_with_dollar_sign(v)
        or bool(_FORMAT_PLACEHOLDER.search(v))
        or bool(_FAKE_VALUE.search(v))
        or v.startswith(("!", "{", "$"))
        or v.upper() == v and "_" in v and v.replace("_", "").isalpha()  # ``DB_PASSWORD`` (a name, not a value)
        or v.startswith(("<", "os.", "env.", "process.env", "ENV["))
    )


@dataclass(frozen=True)
class _Plugins:
    formats: tuple
    entropy: tuple


@lru_cache(maxsize=4)
def _plugins(base64_limit: float, hex_limit: float) -> _Plugins:
    """detect-secrets' format plugins (the seed's list plus the newer GitLab/OpenAI/PyPI/... ones).

    Keyword and PrivateKey are applied separately (they need the keyword or the
    whole block); BasicAuth and the public-IP plugin are superseded by
    ``_URL_CREDENTIALS`` and ``find_ip_addresses`` (see there why)."""
    from detect_secrets.plugins import (
        artifactory, aws, azure_storage_key, cloudant, discord, github_token, gitlab_token,
        high_entropy_strings, ibm_cloud_iam, ibm_cos_hmac, jwt, mailchimp, npm, openai, pypi_token,
        sendgrid, slack, softlayer, square_oauth, stripe, telegram_token, twilio,
    )

    formats = (
        artifactory.ArtifactoryDetector(), aws.AWSKeyDetector(), azure_storage_key.AzureStorageKeyDetector(),
        cloudant.CloudantDetector(), discord.DiscordBotTokenDetector(), github_token.GitHubTokenDetector(),
        gitlab_token.GitLabTokenDetector(), ibm_cloud_iam.IbmCloudIamDetector(), ibm_cos_hmac.IbmCosHmacDetector(),
        jwt.JwtTokenDetector(), mailchimp.MailchimpDetector(), npm.NpmDetector(), openai.OpenAIDetector(),
        pypi_token.PypiTokenDetector(), sendgrid.SendGridDetector(), slack.SlackDetector(),
        softlayer.SoftlayerDetector(), square_oauth.SquareOAuthDetector(), stripe.StripeDetector(),
        telegram_token.TelegramBotTokenDetector(), twilio.TwilioKeyDetector(),
    )
    entropy = (
        high_entropy_strings.Base64HighEntropyString(limit=base64_limit),
        high_entropy_strings.HexHighEntropyString(limit=hex_limit),
    )
    return _Plugins(formats, entropy)


@lru_cache(maxsize=64)
def _keyword_patterns(path: str) -> tuple[tuple[re.Pattern, int], ...]:
    from detect_secrets.plugins import keyword
    from detect_secrets.util.filetype import determine_file_type

    if _CONFIG_NAMES.search(path or ""):
        table = keyword.CONFIG_DENYLIST_REGEX_TO_GROUP
    else:
        table = keyword.REGEX_BY_FILETYPE.get(determine_file_type(path or ""), keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)
    return tuple(table.items())


@lru_cache(maxsize=1)
def _gibberish():
    """detect-secrets' own gibberish model (the RFC-trained one it ships) and limit (3.7)."""
    import os

    from detect_secrets.filters import gibberish
    from gibberish_detector import serializer
    from gibberish_detector.detector import Detector

    with open(os.path.join(gibberish.__path__[0], "rfc.model")) as fh:
        return Detector(serializer.deserialize(fh.read()), 3.7)


# --------------------------------------------------------------------------- redaction
def detect(text: str, path: str, params: PiiParams) -> list[Finding]:
    """All findings of the configured types, overlaps resolved (earliest, then by type, then longest)."""
    types = {t.upper() for t in params.types}  # params spell ``email``; a finding's type is ``EMAIL``
    found: list[Finding] = []
    if EMAIL in types:
        found += find_emails(text)
    if IP_ADDRESS in types:
        found += find_ip_addresses(text)
    if KEY in types or PASSWORD in types:
        found += [f for f in find_secrets(text, path, params) if f.type in types]
    return _resolve_overlaps(found)


def _resolve_overlaps(found: Iterable[Finding]) -> list[Finding]:
    # Secrets win ties against emails/IPs: ``postgres://u:pw@host`` is a password, not an email.
    priority = {PASSWORD: 0, KEY: 1, EMAIL: 2, IP_ADDRESS: 3}
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, priority[f.type], -(f.end - f.start))):
        if out and f.start < out[-1].end:
            continue
        out.append(f)
    return out


def replacement(finding: Finding) -> str:
    return ip_replacement(finding.value) if finding.type == IP_ADDRESS else PLACEHOLDERS[finding.type]


def redact(text: str, path: str, params: PiiParams) -> tuple[str, list[Finding]]:
    """(redacted text, findings with spans in the original text); ``path`` decides the file type."""
    findings = detect(text, path, params)
    if not findings:
        return text, findings
    parts, pos = [], 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(replacement(f))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts), findings


# --------------------------------------------------------------------------- Arrow batches
COUNT_COLUMNS = tuple(f"pii_{t.lower()}" for t in PII_TYPES)


def redact_batch_counted(batch: pa.Table, params: PiiParams) -> pa.Table:
    """The ``map_batches`` form: the batch with ``content`` redacted (``length_bytes`` follows it)
    plus one ``pii_<type>`` count column per type.

    ``sha256`` is left as is: it names the source file (dedup and rejected tables refer to it)."""
    texts, counts = [], {c: [] for c in COUNT_COLUMNS}
    paths = batch.column("path").to_pylist() if "path" in batch.column_names else [""] * batch.num_rows
    for text, path in zip(batch.column("content").to_pylist(), paths):
        redacted, findings = redact(text or "", path or "", params)
        texts.append(redacted if text is not None else None)
        per_type = Counter(f.type for f in findings)
        for t in PII_TYPES:
            counts[f"pii_{t.lower()}"].append(per_type.get(t, 0))
    out = set_column(batch, "content", pa.array(texts, pa.string()))
    if "length_bytes" in out.column_names:
        lengths = [len(t.encode()) if t is not None else 0 for t in texts]
        out = set_column(out, "length_bytes", pa.array(lengths, out.schema.field("length_bytes").type))
    for name, values in counts.items():
        out = set_column(out, name, pa.array(values, pa.int64()))
    return out


def count_totals(annotated: pa.Table) -> dict[str, int]:
    """``{"pii_email": n, ...}`` summed over a table from ``redact_batch_counted``."""
    return {c: int(sum(annotated.column(c).to_pylist())) for c in COUNT_COLUMNS if c in annotated.column_names}


def drop_count_columns(annotated: pa.Table) -> pa.Table:
    return annotated.drop_columns([c for c in COUNT_COLUMNS if c in annotated.column_names])
