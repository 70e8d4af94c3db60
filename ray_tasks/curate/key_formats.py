"""Provider key formats: tokens that name their issuer by a fixed prefix (``ghp_``, ``hf_``, ``sk-ant-``).

detect-secrets (used in ray_tasks/curate/pii.py) ships plugins for about twenty providers; the
formats below are the ones it lacks (or only partly covers), taken from the rule list of a
maintained leaked-credential scanner, gitleaks
(https://github.com/gitleaks/gitleaks/blob/master/config/gitleaks.toml, rule ids in ``name``), and
GitHub secret scanning's supported patterns
(https://docs.github.com/en/code-security/secret-scanning/introduction/supported-secret-scanning-patterns).
The patterns are written here from the providers' documented formats (prefix, alphabet, length);
each has a made-up, format-valid example in tests/assets/pii_key_formats.yaml.

Why hand-written: no maintained Python library ships these formats with spans. ``whispers``
(PyPI, measured for issue 18) knows a handful of them, reports a key/value per line without
offsets, and depends on semgrep. Matching is driven by the prefix: pii.py's Aho-Corasick pass over
the text (which it runs anyway for its keywords) reports where a prefix occurs, and only there is
the format's regex tried, so the table costs nothing on text without those prefixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class KeyFormat:
    name: str
    """The scanner's rule id (gitleaks' where it has one)."""
    prefix: str
    """Literal start of the token; case-sensitive; where the prefix search looks."""
    body: str
    """Regex of what follows the prefix (the token ends at a non-token character)."""
    prefix_is_secret: bool = True
    """False for webhook URLs: the prefix (``https://hooks.slack.com/services/``) is kept, the path redacted."""


# name (gitleaks' rule id where it has one)   prefix (literal, case-sensitive)   body regex; ``path``: only
# the part after the prefix is the key (webhook URLs). In bodies B64URL, ALNUM and HEX stand for
# [A-Za-z0-9_-], [A-Za-z0-9] and [a-f0-9].
_TABLE = r"""
# cloud
aws-access-token                     AKIA                       [A-Z2-7]{16}
aws-access-token-sts                 ASIA                       [A-Z2-7]{16}
gcp-api-key                          AIza                       B64URL{35}
gcp-oauth-client-secret              GOCSPX-                    B64URL{28}
digitalocean-pat                     dop_v1_                    HEX{64}
digitalocean-access-token            doo_v1_                    HEX{64}
digitalocean-refresh-token           dor_v1_                    HEX{64}
alibaba-access-key-id                LTAI                       ALNUM{20}
databricks-api-token                 dapi                       HEX{32}(?:-\d)?
doppler-api-token                    dp.                        (?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}
hashicorp-vault-service-token        hvs.                       B64URL{90,120}
pulumi-api-token                     pul-                       HEX{40}
planetscale-api-token                pscale_tkn_                [\w.=-]{32,64}
dynatrace-api-token                  dt0c01.                    [A-Z0-9]{24}\.[A-Z0-9]{64}
new-relic-user-api-key               NRAK-                      [A-Z0-9]{27}
new-relic-insert-key                 NRII-                      B64URL{32}
grafana-service-account-token        glsa_                      [A-Za-z0-9]{32}_[A-Fa-f0-9]{8}
grafana-cloud-api-token              glc_                       [A-Za-z0-9+/]{32,400}={0,2}
sentry-org-token                     sntrys_                    eyJ[A-Za-z0-9+/=_]{60,}
sentry-user-token                    sntryu_                    HEX{64}
flyio-access-token                   fo1_                       B64URL{43}
supabase-access-token                sbp_                       HEX{40}
heroku-api-key-v2                    HRKU-AA                    B64URL{58}
age-secret-key                       AGE-SECRET-KEY-1           [QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}
# version control, CI
github-pat                           ghp_                       ALNUM{36}
github-oauth                         gho_                       ALNUM{36}
github-user-to-server                ghu_                       ALNUM{36}
github-app-token                     ghs_                       ALNUM{36}
github-refresh-token                 ghr_                       ALNUM{36}
github-fine-grained-pat              github_pat_                \w{82}
gitlab-pat                           glpat-                     B64URL{20,50}
gitlab-runner-token                  glrt-                      B64URL{20,50}
gitlab-deploy-token                  gldt-                      B64URL{20,50}
gitlab-ptt                           glptt-                     HEX{40}
gitlab-rrt                           GR1348941                  B64URL{20}
bitbucket-app-password               ATBB                       [A-Za-z0-9_=.-]{32}
atlassian-api-token                  ATATT3                     [A-Za-z0-9_=-]{150,250}
dockerhub-pat                        dckr_pat_                  B64URL{27}
postman-api-token                    PMAK-                      [a-f0-9]{24}-[a-f0-9]{34}
linear-api-key                       lin_api_                   ALNUM{40}
figma-pat                            figd_                      B64URL{40}
notion-api-token                     ntn_                       [0-9]{11}[A-Za-z0-9]{35}
prefect-api-token                    pnu_                       ALNUM{36}
typeform-api-token                   tfp_                       [\w.=-]{59}
# payment, commerce
stripe-secret-key                    sk_live_                   ALNUM{10,99}
stripe-restricted-key                rk_live_                   ALNUM{10,99}
stripe-test-secret-key               sk_test_                   ALNUM{10,99}
square-access-token                  sq0atp-                    B64URL{22}
square-oauth-secret                  sq0csp-                    B64URL{43}
shopify-access-token                 shpat_                     [a-fA-F0-9]{32}
shopify-custom-access-token          shpca_                     [a-fA-F0-9]{32}
shopify-private-app-access-token     shppa_                     [a-fA-F0-9]{32}
shopify-shared-secret                shpss_                     [a-fA-F0-9]{32}
flutterwave-secret-key               FLWSECK_TEST-              [a-h0-9]{32}-X
easypost-api-token                   EZAK                       ALNUM{54}
duffel-api-token                     duffel_live_               [\w=-]{43}
# chat, mail
slack-bot-token                      xoxb-                      [0-9]{10,13}-[0-9]{10,13}[A-Za-z0-9-]*
slack-user-token                     xoxp-                      [0-9]{10,13}-[0-9]{10,13}[A-Za-z0-9-]*
slack-app-token                      xapp-                      \d-[A-Z0-9]+-\d+-[a-z0-9]+
slack-webhook-url                    hooks.slack.com/services/  T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24}  path
discord-webhook-url                  discord.com/api/webhooks/  \d{17,20}/[\w-]{60,68}  path
discord-webhook-url-legacy           discordapp.com/api/webhooks/ \d{17,20}/[\w-]{60,68}  path
mailgun-private-api-token            key-                       HEX{32}
sendinblue-api-token                 xkeysib-                   [a-f0-9]{64}-[A-Za-z0-9]{16}
# package registries
npm-access-token                     npm_                       ALNUM{36}
pypi-upload-token                    pypi-AgEIcHlwaS5vcmc       B64URL{50,}
rubygems-api-token                   rubygems_                  HEX{48}
nuget-api-key                        oy2                        [a-z0-9]{43}
clojars-api-token                    CLOJARS_                   [a-z0-9]{60}
readme-api-token                     rdme_                      [a-z0-9]{70}
# AI APIs
openai-project-key                   sk-proj-                   B64URL{40,200}
openai-service-account-key           sk-svcacct-                B64URL{40,200}
openai-admin-key                     sk-admin-                  B64URL{40,200}
anthropic-api-key                    sk-ant-api03-              B64URL{80,100}AA
anthropic-admin-api-key              sk-ant-admin01-            B64URL{80,100}AA
huggingface-access-token             hf_                        [A-Za-z]{34}
huggingface-organization-api-token   api_org_                   [A-Za-z]{34}
groq-api-key                         gsk_                       ALNUM{52}
replicate-api-token                  r8_                        ALNUM{37}
perplexity-api-key                   pplx-                      ALNUM{48}
xai-api-key                          xai-                       ALNUM{80}
langsmith-api-key                    lsv2_                      (?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}
mapbox-secret-token                  sk.eyJ                     [\w-]{40,}\.[\w-]{20,}
"""
_MACROS = {"B64URL": "[A-Za-z0-9_-]", "ALNUM": "[A-Za-z0-9]", "HEX": "[a-f0-9]"}


def _parse(table: str) -> tuple[KeyFormat, ...]:
    out = []
    for line in table.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, prefix, body, *flag = line.split()
        for macro, chars in _MACROS.items():
            body = body.replace(macro, chars)
        out.append(KeyFormat(name, prefix, body, prefix_is_secret=flag != ["path"]))
    return tuple(out)


FORMATS = _parse(_TABLE)

# A token character: a format matches only a whole token (``mykey-0123...`` is not a Mailgun key).
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-]")


@dataclass(frozen=True)
class FormatHit:
    start: int
    end: int
    name: str


@lru_cache(maxsize=1)
def by_prefix() -> dict[str, tuple[tuple[KeyFormat, re.Pattern], ...]]:
    """Lower-cased prefix -> the formats starting with it, each with its compiled regex."""
    table: dict[str, list] = {}
    for fmt in FORMATS:
        rx = re.compile(re.escape(fmt.prefix) + f"({fmt.body})(?![A-Za-z0-9_\\-])")
        table.setdefault(fmt.prefix.lower(), []).append((fmt, rx))
    return {k: tuple(v) for k, v in table.items()}


def find_at(text: str, prefix_hits: list[tuple[int, str]]) -> list[FormatHit]:
    """Formats matching where their prefix was seen: ``prefix_hits`` are (end index, lower-cased prefix)
    from a case-insensitive search of ``text``; the regex decides the case and the rest."""
    table = by_prefix()
    out = []
    for end, prefix in prefix_hits:
        start = end - len(prefix) + 1
        for fmt, rx in table[prefix]:
            if fmt.prefix_is_secret and start and _TOKEN_CHAR.match(text, start - 1):
                continue  # inside a longer token
            m = rx.match(text, start)
            if m:
                out.append(FormatHit(start if fmt.prefix_is_secret else m.start(1), m.end(), fmt.name))
    return out
