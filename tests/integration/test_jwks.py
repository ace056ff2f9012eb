"""The JWT verifier against a JWKS served over real HTTP (tests/support/tokens.py): keys by kid,
the algorithm bound to the key, caching and refetch limits (on a clock the test moves), an
outage, the legacy secret beside the JWKS, and Supabase's claims. Every refusal names its kind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from structlog.testing import capture_logs

from mcsync.web.auth import AuthError, TokenVerifier, VerifierUnavailable, make_user_token
from mcsync.web.jwks import JwksKeys, check_jwks_url
from tests.support.harness import wait_until
from tests.support.tokens import TokenIssuer, new_key

LEGACY_SECRET = "legacy-jwt-secret-" + "x" * 32
LIFETIME, REFETCH = 300.0, 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    served = TokenIssuer()
    yield served
    served.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def verifier_for(served: TokenIssuer, clock: Clock, **kwargs: object) -> TokenVerifier:
    keys = JwksKeys(served.jwks_url, lifetime=LIFETIME, refetch_interval=REFETCH, clock=clock)
    return TokenVerifier(jwks=keys, **kwargs)  # type: ignore[arg-type]


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return caught.value.kind


def _hs256(header: dict[str, object], claims: dict[str, object], key: bytes) -> str:
    """An HS256 token built by hand (PyJWT rightly refuses to HMAC with a public key)."""

    def part(value: dict[str, object]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signing_input = part(header) + b"." + part(claims)
    mac = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


@pytest.mark.parametrize("algorithm", ["ES256", "RS256", "EdDSA"])
def test_a_token_signed_by_a_published_key_is_accepted(algorithm: str, clock: Clock) -> None:
    issuer = TokenIssuer(algorithm)
    try:
        user = uuid.uuid4()
        claims = verifier_for(issuer, clock).verify(issuer.token(user))
        assert claims.user_id == user and claims.role == "authenticated"
        assert claims.claims["aud"] == "authenticated"
    finally:
        issuer.close()


def test_the_algorithm_comes_from_the_key_never_from_the_token(
    issuer: TokenIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock)
    user = uuid.uuid4()
    claims = issuer.claims(user)
    kid = issuer.current.kid
    public = issuer.current.private.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_json = json.dumps(issuer.current.public_jwk()).encode()
    confused = {
        # The classic confusion: HS256 "signed" with the published public key as the secret.
        "hs256 keyed with the public key (PEM)": _hs256(
            {"alg": "HS256", "kid": kid, "typ": "JWT"}, claims, pem
        ),
        "hs256 keyed with the public JWK": _hs256(
            {"alg": "HS256", "kid": kid, "typ": "JWT"}, claims, jwk_json
        ),
        "alg none with a real kid": jwt.encode(
            claims, None, algorithm="none", headers={"kid": kid}
        ),
        "RS256 under the ES256 key's kid": new_key("RS256").sign(claims, kid=kid),
        "EdDSA under the ES256 key's kid": new_key("EdDSA").sign(claims, kid=kid),
    }
    for label, token in confused.items():
        assert refused(verifier, token) == "algorithm", label
    # A legacy secret beside the JWKS does not help: an HS256 token meets that secret only.
    both = verifier_for(issuer, clock, secret=LEGACY_SECRET)
    for label in ("hs256 keyed with the public key (PEM)", "hs256 keyed with the public JWK"):
        assert refused(both, confused[label]) == "signature", label
    assert both.verify(issuer.token(user)).user_id == user


def test_a_forged_signature_an_unknown_kid_or_no_kid_is_refused(
    issuer: TokenIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock)
    user = uuid.uuid4()
    assert refused(verifier, issuer.token(user, key=new_key(), kid=issuer.current.kid)) == (
        "signature"
    )
    assert refused(verifier, issuer.token(user, key=new_key())) == "unknown_key"
    no_kid = jwt.encode(issuer.claims(user), issuer.current.private, algorithm="ES256")
    assert refused(verifier, no_kid) == "unknown_key"
    assert refused(verifier, "not.a.jwt") == "malformed"
    assert refused(verifier, "") == "malformed"


def test_supabase_claims_are_checked_and_each_refusal_names_its_kind(
    issuer: TokenIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock, issuer=issuer.issuer_url)
    user = uuid.uuid4()
    cases = {
        "expired": issuer.token(user, ttl=-120),
        "expiry": issuer.token(user, exp=None),  # a token that never expires
        "not_yet_valid": issuer.token(user, nbf=int(issuer.claims(user)["iat"]) + 3600),
        "audience": issuer.token(user, aud="someone-else"),
        "role": issuer.token(user, role="anon"),
        "issuer": issuer.token(user, iss="https://other.supabase.co/auth/v1"),
        "anonymous": issuer.token(user, is_anonymous=True),
        "subject": issuer.token(user, sub="admin"),
    }
    for kind, token in cases.items():
        assert refused(verifier, token) == kind, kind
    assert refused(verifier, issuer.token(user, aud=None)) == "audience"
    assert refused(verifier, issuer.token(user, role="service_role")) == "role"
    assert refused(verifier, issuer.token(user, role=None)) == "role"
    assert refused(verifier, issuer.token(user, iss=None)) == "issuer"
    assert refused(verifier, issuer.token(user, is_anonymous="true")) == "anonymous"
    for sub in ("", "1", str(user).replace("-", ""), f"urn:uuid:{user}", f"{{{user}}}"):
        assert refused(verifier, issuer.token(user, sub=sub)) == "subject", sub
    # Supabase's anon key as it was: no sub, role anon.
    assert refused(verifier, issuer.token(user, sub=None, role="anon")) in {"missing_claim", "role"}

    # What a refusal says is only its kind: never the token, the subject or the key.
    with pytest.raises(AuthError) as caught:
        verifier.verify(cases["role"])
    assert str(caught.value) == "role"

    # Settings loosen exactly what they name.
    anonymous_ok = verifier_for(issuer, clock, allow_anonymous=True)
    assert anonymous_ok.verify(issuer.token(user, is_anonymous=True)).user_id == user
    other_audience = verifier_for(issuer, clock, audiences=["mobile", "authenticated"])
    assert other_audience.verify(issuer.token(user, aud="mobile")).user_id == user
    assert verifier_for(issuer, clock).verify(issuer.token(user, iss=None)).user_id == user


def test_thirty_made_up_kids_cause_at_most_one_refetch(issuer: TokenIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    user = uuid.uuid4()
    verifier.verify(issuer.token(user))
    assert issuer.fetches == 1
    for _ in range(30):
        clock.now += 1  # thirty seconds of flood: three refetch intervals
        assert refused(verifier, issuer.token(user, key=new_key())) == "unknown_key"
    assert issuer.fetches <= 1 + 30 / REFETCH
    # With a flood as fast as the server can take it: none.
    before = issuer.fetches
    for _ in range(30):
        refused(verifier, issuer.token(user, key=new_key()))
    assert issuer.fetches - before <= 1
    assert verifier.verify(issuer.token(user)).user_id == user


def test_a_rotated_key_is_fetched_and_a_revoked_key_stops_within_the_cache_lifetime(
    issuer: TokenIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock)
    user = uuid.uuid4()
    old_key = issuer.current
    old_token = issuer.token(user, ttl=3600)
    assert verifier.verify(old_token).user_id == user

    clock.now += REFETCH
    issuer.rotate()  # the new key signs; the old one is "previously used", still published
    assert verifier.verify(issuer.token(user)).user_id == user  # unknown kid: one refetch
    assert verifier.verify(old_token).user_id == user
    fetches = issuer.fetches
    assert fetches == 2

    issuer.revoke(old_key)
    clock.now += LIFETIME - 1
    assert verifier.verify(old_token).user_id == user  # still cached: one lifetime at most
    clock.now += 2
    assert refused(verifier, old_token) == "unknown_key"
    assert verifier.verify(issuer.token(user)).user_id == user
    assert issuer.fetches == fetches + 1


def test_an_unreachable_jwks_is_logged_once_and_known_keys_keep_working(
    issuer: TokenIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock)
    user = uuid.uuid4()
    token = issuer.token(user, ttl=3600)
    verifier.verify(token)

    issuer.down = True
    with capture_logs() as logs:
        for _ in range(5):
            clock.now += LIFETIME  # every call finds the cache stale and tries again
            assert verifier.verify(token).user_id == user
            refused(verifier, issuer.token(user, key=new_key()))
        issuer.down = False
        clock.now += REFETCH
        verifier.verify(token)
    events = [e["event"] for e in logs]
    assert events.count("jwks_unavailable") == 1
    assert events.count("jwks_available") == 1
    [outage] = [e for e in logs if e["event"] == "jwks_unavailable"]
    assert outage["keys_kept"] == 1 and outage["url"] == issuer.jwks_url
    assert issuer.fetches <= 1 + 5 + 1  # one attempt per stale call, no more


def test_a_slow_fetch_keeps_only_the_request_that_needs_it_waiting(
    issuer: TokenIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock)
    user = uuid.uuid4()
    token = issuer.token(user, ttl=3600)
    verifier.verify(token)

    issuer.stall = threading.Event()
    clock.now += LIFETIME  # the set is stale: the next request must fetch
    fetching = threading.Thread(target=refused, args=(verifier, issuer.token(user, key=new_key())))
    fetching.start()
    wait_until(lambda: issuer.stalled == 1, timeout=5)
    # While that fetch hangs, a request whose key is in hand is answered.
    assert verifier.verify(token).user_id == user
    assert fetching.is_alive()
    issuer.stall.set()
    fetching.join(timeout=10)
    assert not fetching.is_alive()


def test_a_jwks_never_reached_answers_unavailable_not_a_refusal(
    issuer: TokenIssuer, clock: Clock
) -> None:
    issuer.down = True
    verifier = verifier_for(issuer, clock)
    with pytest.raises(VerifierUnavailable):
        verifier.verify(issuer.token(uuid.uuid4()))
    issuer.down = False
    clock.now += REFETCH
    assert verifier.verify(issuer.token(uuid.uuid4()))


def test_a_jwks_with_no_usable_keys_verifies_nothing_and_symmetric_keys_are_ignored(
    issuer: TokenIssuer, clock: Clock
) -> None:
    # A project on the legacy secret publishes an empty set; a JWKS must never hand out an
    # HMAC key (anyone could read it), so an `oct` key in the set is not used.
    issuer.published = []
    verifier = verifier_for(issuer, clock, secret=LEGACY_SECRET)
    user = uuid.uuid4()
    assert refused(verifier, issuer.token(user)) == "unknown_key"
    assert verifier.verify(make_user_token(LEGACY_SECRET, user)).user_id == user

    published = issuer.current.public_jwk()
    shared = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
    oct_key = {"kty": "oct", "k": shared, "kid": "shared", "alg": "HS256"}
    issuer.published = [issuer.current]
    original = issuer.jwks
    issuer.jwks = lambda: {"keys": [oct_key, published]}  # type: ignore[method-assign]
    try:
        clock.now += LIFETIME
        assert verifier.verify(issuer.token(user)).user_id == user
        forged = _hs256({"alg": "HS256", "kid": "shared"}, issuer.claims(user), b"k" * 32)
        assert refused(verifier, forged) == "signature"  # met the legacy secret, not the oct key
        assert verifier.jwks is not None and verifier.jwks.kids == [issuer.current.kid]
    finally:
        issuer.jwks = original  # type: ignore[method-assign]


def test_the_legacy_secret_works_alone() -> None:
    verifier = TokenVerifier(secret=LEGACY_SECRET)
    user = uuid.uuid4()
    assert verifier.verify(make_user_token(LEGACY_SECRET, user)).user_id == user
    assert refused(verifier, make_user_token("another-secret-" + "y" * 32, user)) == "signature"
    es256 = TokenIssuer()
    try:
        assert refused(verifier, es256.token(user)) == "algorithm"
    finally:
        es256.close()


def test_the_jwks_url_must_be_https_but_for_this_machine() -> None:
    supabase = "https://abcd.supabase.co/auth/v1/.well-known/jwks.json"
    assert check_jwks_url(supabase) == supabase
    assert check_jwks_url("http://127.0.0.1:9999/jwks.json")
    assert check_jwks_url("http://localhost/jwks.json")
    for bad in ("http://abcd.supabase.co/jwks.json", "file:///etc/passwd", "abcd", ""):
        with pytest.raises(ValueError, match="https"):
            check_jwks_url(bad)
    with pytest.raises(ValueError, match="MCSYNC_JWKS_URL"):
        TokenVerifier()
