"""The client's pure parts: connection config, token parsing, call building, retry policy,
server-message extraction and status ordering. No HTTP here (see test_client_requests.py)."""

from __future__ import annotations

import base64
import json
import random
import re

import certifi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emedgene_provider.cases.validation import case_problems
from emedgene_provider.client import endpoints, status
from emedgene_provider.client.auth import (
    MAX_RENEWAL_LEAD,
    Credentials,
    basic_auth_value,
    derive_login_url,
    login_request,
    parse_token,
)
from emedgene_provider.client.config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_MAX_WAIT,
    DEFAULT_SESSION_LIFETIME,
    DEFAULT_TIMEOUT,
    config_from_connection,
    parse_extra,
)
from emedgene_provider.client.errors import EmedgeneConfigError, EmedgeneInvalidCaseNameError
from emedgene_provider.client.responses import server_words, trim
from emedgene_provider.client.retry import RetryPolicy, is_retryable_status, parse_retry_after

NOW = 1_800_000_000.0


def config(host="https://lab.emedgene.com", login="u", password="pw-123456", extra=None, **kw):
    return config_from_connection(host=host, login=login, password=password, extra=extra, **kw)


def jwt(payload: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(payload)}.sig"


# ---------------------------------------------------------------------------------------------
class TestConnectionHost:
    @pytest.mark.parametrize(
        ("host", "base_url"),
        [
            ("lab.emedgene.com", "https://lab.emedgene.com"),
            ("  lab.emedgene.com/ ", "https://lab.emedgene.com"),
            ("https://lab.emedgene.com/api/", "https://lab.emedgene.com"),
            ("https://lab.emedgene.com:8443", "https://lab.emedgene.com:8443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:9000", "http://localhost:9000"),
            ("http://[::1]:9000", "http://[::1]:9000"),
        ],
    )
    def test_base_url(self, host, base_url):
        assert config(host=host).base_url == base_url

    def test_port_field_is_appended(self):
        assert config(host="lab.emedgene.com", port=8443).base_url == "https://lab.emedgene.com:8443"

    def test_schema_field_is_the_scheme(self):
        assert config(host="127.0.0.1", schema="http", port=5000).base_url == "http://127.0.0.1:5000"

    def test_plain_http_to_a_remote_host_is_refused(self):
        with pytest.raises(EmedgeneConfigError, match="allow_http"):
            config(host="http://lab.example.org")

    @pytest.mark.parametrize("allow", [True, "true", "1", "yes"])
    def test_plain_http_allowed_when_asked(self, allow):
        assert config(host="http://lab.example.org", extra={"allow_http": allow}).base_url == (
            "http://lab.example.org"
        )

    def test_plain_http_token_url_is_refused(self):
        with pytest.raises(EmedgeneConfigError, match="login_url"):
            config(
                host="lab.emg.illumina.com",
                login=None,
                password=None,
                extra={"api_key": "k", "login_url": "http://sso.example.org/Token"},
            )

    @pytest.mark.parametrize("host", [None, "", "   "])
    def test_no_host_is_an_error(self, host):
        with pytest.raises(EmedgeneConfigError, match="no host"):
            config(host=host)

    def test_not_a_url(self):
        with pytest.raises(EmedgeneConfigError, match="not an http"):
            config(host="ftp://lab.emedgene.com")


class TestConnectionExtras:
    def test_defaults(self):
        cfg = config()
        assert cfg.verify is True
        assert cfg.timeout == DEFAULT_TIMEOUT == 30.0
        assert cfg.session_lifetime == DEFAULT_SESSION_LIFETIME
        assert cfg.retry == RetryPolicy(max_attempts=DEFAULT_MAX_RETRIES + 1, max_wait=DEFAULT_RETRY_MAX_WAIT)
        assert cfg.case_url_template is None
        assert cfg.credentials.auth_type == "password"
        assert cfg.credentials.login_url is None

    @pytest.mark.parametrize(
        ("raw", "verify"),
        [
            ("false", False),
            ("False", False),
            ("0", False),
            (False, False),
            ("true", True),
            (True, True),
            (certifi.where(), certifi.where()),  # an existing file of PEM certificates: a CA bundle
        ],
    )
    def test_verify(self, raw, verify):
        assert config(extra={"verify": raw}).verify == verify

    @pytest.mark.parametrize("raw", ["/etc/ssl/no-such-bundle.pem", "ture"])
    def test_verify_that_is_no_file_is_refused_naming_it(self, raw):
        with pytest.raises(EmedgeneConfigError) as info:
            config(extra={"verify": raw})
        assert str(info.value) == (
            f"Emedgene connection extra 'verify' is {raw!r}: neither true/false nor the path of an "
            "existing CA bundle file."
        )

    def test_unknown_extra_is_named(self):
        expected = re.escape("unknown extra(s) 'verfy' (did you mean 'verify'?)")
        with pytest.raises(EmedgeneConfigError, match=expected) as info:
            config(extra={"verfy": "false"})
        assert "known extras: api_key" in str(info.value)

    def test_ui_prefixed_extras_are_accepted(self):
        cfg = config(
            host="lab.emg.illumina.com",
            login=None,
            password=None,
            extra={"extra__emedgene__api_key": "key-1", "extra__emedgene__timeout": "5"},
        )
        assert cfg.credentials.auth_type == "api_key"
        assert cfg.credentials.api_key == "key-1"
        assert cfg.timeout == 5.0

    def test_blank_strings_mean_default(self):
        cfg = config(
            extra={"timeout": "", "verify": "", "max_retries": "", "session_lifetime": "", "api_key": ""}
        )
        assert cfg.timeout == DEFAULT_TIMEOUT
        assert cfg.verify is True
        assert cfg.retry.max_attempts == DEFAULT_MAX_RETRIES + 1
        assert cfg.session_lifetime == DEFAULT_SESSION_LIFETIME
        assert cfg.credentials.auth_type == "password"

    def test_extra_as_json_text(self):
        cfg = config(extra='{"timeout": "7.5", "max_retries": 2, "retry_max_wait": "9"}')
        assert cfg.timeout == 7.5
        assert cfg.retry.max_attempts == 3
        assert cfg.retry.max_wait == 9.0

    @pytest.mark.parametrize("extra", ["{not json", "[1, 2]"])
    def test_bad_extra_text(self, extra):
        with pytest.raises(EmedgeneConfigError, match="extra"):
            config(extra=extra)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("timeout", "abc"),
            ("timeout", "0"),
            ("timeout", "-1"),
            ("max_retries", "many"),
            ("session_lifetime", "0.5"),
        ],
    )
    def test_bad_numbers(self, name, value):
        with pytest.raises(EmedgeneConfigError, match=name):
            config(extra={name: value})

    def test_bad_boolean(self):
        with pytest.raises(EmedgeneConfigError, match="allow_http"):
            config(extra={"allow_http": "maybe"})

    def test_bad_auth_type(self):
        with pytest.raises(EmedgeneConfigError, match="auth_type"):
            config(extra={"auth_type": "oauth"})

    def test_parse_extra_drops_none_and_blank(self):
        assert parse_extra({"a": None, "b": "", "extra__emedgene__c": "x", "d": 0}) == {"c": "x", "d": 0}
        assert parse_extra(None) == {}
        assert parse_extra("") == {}


class TestConnectionAuth:
    def test_password_needs_both(self):
        with pytest.raises(EmedgeneConfigError, match="both login and password"):
            config(password=None)

    def test_api_key_on_illumina_derives_the_token_url(self):
        cfg = config(host="lab.emg.illumina.com", login=None, password=None, extra={"api_key": "k"})
        assert cfg.credentials.auth_type == "api_key"
        assert cfg.credentials.login_url == "https://lab.login.illumina.com/platform-services-manager/Token"

    def test_api_key_elsewhere_needs_token_url(self):
        with pytest.raises(EmedgeneConfigError, match="login_url"):
            config(login=None, password=None, extra={"api_key": "k"})

    def test_both_without_auth_type_is_refused(self):
        with pytest.raises(EmedgeneConfigError, match="auth_type"):
            config(host="lab.emg.illumina.com", extra={"api_key": "k"})

    @pytest.mark.parametrize("auth_type", ["password", "api_key"])
    def test_auth_type_picks(self, auth_type):
        cfg = config(host="lab.emg.illumina.com", extra={"api_key": "k", "auth_type": auth_type})
        assert cfg.credentials.auth_type == auth_type

    def test_secrets_reach_on_secret_before_validation_fails(self):
        seen: list[str] = []
        with pytest.raises(EmedgeneConfigError):
            config(host=None, extra={"api_key": "key-XYZ"}, on_secret=seen.append)
        assert seen == ["pw-123456", "key-XYZ"]

    def test_repr_never_shows_secrets(self):
        cfg = config(host="lab.emg.illumina.com", extra={"api_key": "key-XYZ", "auth_type": "api_key"})
        assert "pw-123456" not in repr(cfg)
        assert "key-XYZ" not in repr(cfg)

    @pytest.mark.parametrize(
        ("base_url", "login_url"),
        [
            (
                "https://acme.emg.illumina.com",
                "https://acme.login.illumina.com/platform-services-manager/Token",
            ),
            (
                "https://ACME.EMG.ILLUMINA.COM:443",
                "https://acme.login.illumina.com/platform-services-manager/Token",
            ),
            ("https://emg.illumina.com", None),
            ("https://acme.emedgene.com", None),
            ("https://evil-emg.illumina.com.example.org", None),
        ],
    )
    def test_derive_token_url(self, base_url, login_url):
        assert derive_login_url(base_url) == login_url

    def test_login_request_shapes(self):
        pw = Credentials("https://lab.emedgene.com", "password", username="u", password="p")
        req = login_request(pw)
        assert (req.method, req.url, req.json, req.params, req.headers) == (
            "POST",
            "https://lab.emedgene.com/api/auth/v2/api_login/",
            {"username": "u", "password": "p"},
            (),
            {},
        )
        key = Credentials("https://x.emg.illumina.com", "api_key", api_key="k1", login_url="https://t/Token")
        req = login_request(key)
        assert (req.method, req.url, req.json, req.params) == (
            "POST",
            "https://t/Token",
            None,
            (("audience", "emedgene"), ("grant_type", "api_key")),
        )
        assert req.headers == {"Authorization": "Basic ZW1lZGdlbmU6azE="}
        assert basic_auth_value("k1") == "Basic " + base64.b64encode(b"emedgene:k1").decode()

    def test_cache_key_separates_credentials_and_hides_the_secret(self):
        a = Credentials("https://lab.emedgene.com", "password", username="u", password="p1")
        b = Credentials("https://lab.emedgene.com", "password", username="u", password="p2")
        c = Credentials("https://lab.emedgene.com", "password", username="u", password="p1")
        assert a.cache_key() != b.cache_key()
        assert a.cache_key() == c.cache_key()
        assert "p1" not in a.cache_key()


# ---------------------------------------------------------------------------------------------
class TestParseToken:
    def test_expires_in(self):
        token = parse_token(
            {"access_token": "t", "token_type": "bearer", "expires_in": 3600}, default_lifetime=99, now=NOW
        )
        assert token.header_value == "Bearer t"
        assert token.expires_at == NOW + 3600
        assert token.renew_at == NOW + 3600 - MAX_RENEWAL_LEAD
        assert not token.needs_renewal(NOW + 3299)
        assert token.needs_renewal(NOW + 3300)

    def test_short_lifetime_renews_at_nine_tenths(self):
        token = parse_token({"access_token": "t", "expires_in": 100}, default_lifetime=99, now=NOW)
        assert token.renew_at == NOW + 90

    def test_jwt_exp(self):
        access = jwt({"exp": NOW + 1000, "sub": "u"})
        token = parse_token({"access_token": access, "token_type": "bearer"}, default_lifetime=99, now=NOW)
        assert token.expires_at == NOW + 1000
        assert token.renew_at == NOW + 900

    def test_expires_in_beats_jwt_exp(self):
        access = jwt({"exp": NOW + 1000})
        token = parse_token({"access_token": access, "expires_in": 50}, default_lifetime=99, now=NOW)
        assert token.expires_at == NOW + 50

    @pytest.mark.parametrize(
        "access",
        ["opaque-token", jwt({"sub": "no exp"}), jwt({"exp": "soon"}), jwt({"exp": True}), "a.b.c", "a.!!.c"],
    )
    def test_default_lifetime_otherwise(self, access):
        token = parse_token({"access_token": access}, default_lifetime=600, now=NOW)
        assert token.expires_at == NOW + 600
        assert token.renew_at == NOW + 540

    @pytest.mark.parametrize("expires_in", [0, -5, "3600", True, None])
    def test_unusable_expires_in_falls_back(self, expires_in):
        token = parse_token({"access_token": "t", "expires_in": expires_in}, default_lifetime=600, now=NOW)
        assert token.expires_at == NOW + 600

    def test_legacy_authorization(self):
        token = parse_token({"Authorization": "Bearer legacy"}, default_lifetime=60, now=NOW)
        assert (token.access_token, token.header_value) == ("legacy", "Bearer legacy")

    @pytest.mark.parametrize(
        "body",
        [None, [], "token", {}, {"access_token": ""}, {"access_token": 5}, {"Authorization": "nospace"}],
    )
    def test_no_token(self, body):
        assert parse_token(body, default_lifetime=60, now=NOW) is None

    def test_repr_hides_the_token(self):
        token = parse_token({"access_token": "very-secret-token"}, default_lifetime=60, now=NOW)
        assert "very-secret-token" not in repr(token)


# ---------------------------------------------------------------------------------------------
VALID_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class TestCallBuilding:
    @given(st.one_of(st.text(), st.from_regex(r"[A-Za-z0-9_.\-]{1,40}", fullmatch=True)))
    @settings(max_examples=400, deadline=None)
    def test_any_text_is_rejected_or_lands_verbatim_in_the_path(self, name):
        try:
            call = endpoints.get_case(name)
        except EmedgeneInvalidCaseNameError:
            return
        assert call.path == f"/api/test/{name}"
        assert VALID_NAME.fullmatch(name)
        assert ".." not in name
        assert call.case_name == name

    @given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text())))
    @settings(max_examples=50, deadline=None)
    def test_non_text_is_rejected(self, name):
        with pytest.raises(EmedgeneInvalidCaseNameError):
            endpoints.case_path_segment(name)

    def test_long_name_is_shown_trimmed(self):
        with pytest.raises(EmedgeneInvalidCaseNameError) as info:
            endpoints.case_path_segment("/" * 500)
        assert len(str(info.value)) < 300
        assert "'///" in str(info.value)

    def test_calls(self):
        assert endpoints.list_cases(20, 10).params == (("from", "20"), ("size", "10"))
        assert endpoints.list_cases(0, 1).path == "/api/test"
        status_call = endpoints.get_case_status("EMG1")
        assert (status_call.method, status_call.path, status_call.params) == (
            "GET",
            "/api/test/EMG1",
            (("test_fields", "status"),),
        )
        assert endpoints.get_case("EMG1", ["status", "patients"]).params == (
            ("test_fields", "status"),
            ("test_fields", "patients"),
        )
        assert endpoints.get_candidates("EMG1").path == "/api/candidates/EMG1"
        assert endpoints.export_case("EMG1").path == "/api/test/EMG1/export"
        assert endpoints.list_storage_providers().path == "/api/storage"

    def test_create_and_validate(self):
        case = {"test_data": {}}
        create = endpoints.create_case(case)
        assert (create.method, create.path, create.params, create.json, create.expected) == (
            "POST",
            "/api/cases/v2/cases",
            (),
            case,
            (201,),
        )
        assert create.idempotent is False
        dry = endpoints.create_case(case, dry_run=True)
        assert (dry.operation, dry.params, dry.idempotent) == ("validate_case", (("dry_run", "true"),), True)

    def test_describe(self):
        assert endpoints.get_case_status("EMG1").describe() == "get_case_status(EMG1)"
        assert endpoints.list_storage_providers().describe() == "list_storage_providers"


# ---------------------------------------------------------------------------------------------
class TestRetryPolicy:
    @pytest.mark.parametrize(
        ("status_code", "idempotent", "retried"),
        [
            (429, False, True),
            (429, True, True),
            (500, True, True),
            (500, False, False),
            (502, True, True),
            (502, False, False),
            (503, True, True),
            (503, False, False),
            (504, True, True),
            (501, True, False),
            (400, True, False),
            (404, True, False),
            (409, False, False),
        ],
    )
    def test_is_retryable_status(self, status_code, idempotent, retried):
        assert is_retryable_status(status_code, idempotent=idempotent) is retried

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0), ("", None), (None, None), ("soon", None), ("nan", None)],
    )
    def test_parse_retry_after_seconds(self, value, seconds):
        assert parse_retry_after(value) == seconds

    def test_parse_retry_after_http_date(self):
        date = "Wed, 21 Oct 2015 07:28:00 GMT"
        assert parse_retry_after(date, now=1445412480.0 - 10) == 10.0
        assert parse_retry_after(date, now=1445412480.0 + 10) == 0.0

    def test_backoff_bounds(self):
        policy = RetryPolicy(initial_wait=1.0, max_wait=5.0)
        top = random.Random(0)
        for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
            waits = [policy.backoff(attempt, rng=top) for _ in range(200)]
            assert all(0 <= w <= ceiling for w in waits)
            assert max(waits) > ceiling * 0.8  # full jitter spans the range

    def test_wait_seconds_prefers_retry_after_capped(self):
        policy = RetryPolicy(max_wait=30.0)

        class Failure(Exception):
            retry_after = 7

        class Huge(Exception):
            retry_after = 999.0

        assert policy.wait_seconds(Failure(), 3) == 7.0
        assert policy.wait_seconds(Huge(), 1) == 30.0

    def test_tenacity_kwargs_stop_after_max_attempts(self):
        kwargs = RetryPolicy(max_attempts=0).tenacity_kwargs()
        assert kwargs["reraise"] is True
        assert kwargs["stop"].max_attempt_number == 1


# ---------------------------------------------------------------------------------------------
class TestServerWords:
    @pytest.mark.parametrize(
        ("body", "content_type", "words"),
        [
            (b'{"message": "Unmatched phenotype(s)"}', "application/json", "Unmatched phenotype(s)"),
            (b'{"error": "bad"}', "", "bad"),
            (b'{"detail": {"field": "x"}}', "", '{"field": "x"}'),
            (b'"just a string"', "", "just a string"),
            (b"plain   text\n\nhere", "text/plain", "plain text here"),
            (b"", "", "(empty body)"),
            (
                b"<html><head><title>502 Bad Gateway</title></head><body>x</body></html>",
                "",
                "HTML page: 502 Bad Gateway",
            ),
            (b"<p>no <b>title</b></p>", "text/html", "HTML page: no title"),
            (b"<title>A &amp; B</title>", "text/html; charset=utf-8", "HTML page: A & B"),
            (b"\xff\xfe bad bytes", "", "\ufffd\ufffd bad bytes"),
        ],
    )
    def test_server_words(self, body, content_type, words):
        assert server_words(body, content_type) == words

    def test_trim(self):
        assert trim("a" * 300) == "a" * 300
        assert trim("a" * 301) == "a" * 297 + "..."
        assert len(server_words(b"y" * 10_000)) == 300


# ---------------------------------------------------------------------------------------------
class TestStatus:
    @pytest.mark.parametrize("spelling", ["In progress", "IN_PROGRESS", "in-progress", "  in   progress "])
    def test_normalise(self, spelling):
        assert status.normalise(spelling) == "in progress"

    @pytest.mark.parametrize(
        ("current", "target", "reached"),
        [
            ("Delivered", "DELIVERED", True),
            ("Finalized", "Delivered", True),
            ("Lab review", "Delivered", False),  # undeclared: fail closed (declared: test_status_fail_closed)
            ("Lab review", "Finalized", False),
            ("Uploading", "Delivered", False),
            ("Queued", "Uploading", True),
            ("Re-Analysis", "Delivered", False),
            ("Issue reported", "Delivered", False),
            ("Trash bin", "Uploading", False),
            ("Move to trash", "Trash bin", False),
            ("Issue_Reported", "issue reported", True),
        ],
    )
    def test_has_reached(self, current, target, reached):
        assert status.has_reached(current, target) is reached

    def test_failures(self):
        assert status.is_failure("move-to-trash")
        assert status.is_failure("ISSUE REPORTED")
        assert not status.is_failure("Delivered")


class TestPayload:
    def test_valid_case_has_no_problems(self):
        case = {
            "sharing_level": 0,
            "should_upload": False,
            "test_data": {
                "type": "Exome",
                "sample_type": "vcf",
                "patients": {
                    "proband": {
                        "id": "p1",
                        "fastq_sample": "S1",
                        "gender": "Female",
                        "relationship": "Test Subject",
                        "phenotypes": [{"id": "phenotypes/EMG_PHENOTYPE_0001250"}],
                    }
                },
                "samples": [
                    {
                        "fastq": "S1",
                        "sampleFiles": [{"path": "/p", "filename": "S1.vcf.gz", "storage_id": 1}],
                    }
                ],
            },
        }
        assert case_problems(case) == []

    def test_every_problem_is_listed(self):
        problems = case_problems({"sharing_level": 3, "test_data": {"type": "", "samples": []}})
        assert problems == [
            "sharing_level must be 0 or 1 (got 3)",
            "test_data.type must be a case type's name, e.g. Exome, Whole Genome, Custom Panel, Array "
            "(got '')",
            "test_data.sample_type must be one of fastq, vcf (got None)",
            "test_data.patients.proband is required",
            "test_data.samples must be a non-empty list",
        ]
