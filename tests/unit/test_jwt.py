"""TokenVerifier against real HS256/ES256/RS256 tokens and a real loopback JWKS server.

Tokens are signed here with `cryptography` and `hmac` directly, not with python-jose, so a bug in how the verifier
uses jose cannot hide behind the same bug in the test's signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.jwks_server import JWKS_PATH, MOVED_PATH, JwksServer
from webapp.auth.jwt import TokenVerifier
from webapp.auth.tokens import mint_access_token
from webapp.config import Settings
from webapp.errors import AppError, ServiceUnavailable, Unauthorized

START = 1_760_000_000.0
SECRET = secrets.token_urlsafe(30)  # 40 characters
assert len(SECRET) == 40
Signer = Callable[[bytes], bytes]


# --- signing helpers ---------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def encode(header: dict[str, Any], claims: Any, signer: Signer | None) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = signer(signing_input.encode()) if signer else b""
    return f"{signing_input}.{b64url(signature)}"


def hs256(secret: str | bytes) -> Signer:
    key = secret.encode() if isinstance(secret, str) else secret
    return lambda data: hmac.new(key, data, hashlib.sha256).digest()


def es256(key: ec.EllipticCurvePrivateKey) -> Signer:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants raw r||s, not DER

    return sign


def rs256(key: rsa.RSAPrivateKey) -> Signer:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _int_b64(n: int, length: int) -> str:
    return b64url(n.to_bytes(length, "big"))


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    nums = key.public_key().public_numbers()
    return {"kid": kid, "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "key_ops": ["verify"],
            "x": _int_b64(nums.x, 32), "y": _int_b64(nums.y, 32)}


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    nums = key.public_key().public_numbers()
    return {"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig", "key_ops": ["verify"],
            "n": _int_b64(nums.n, (nums.n.bit_length() + 7) // 8), "e": _int_b64(nums.e, 3)}


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- fixtures ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    ec: ec.EllipticCurvePrivateKey
    ec2: ec.EllipticCurvePrivateKey
    rsa: rsa.RSAPrivateKey

    def jwks(self) -> list[dict[str, Any]]:
        return [ec_jwk(self.ec, "ec-1"), rsa_jwk(self.rsa, "rsa-1")]


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()),
                rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture()
def server(keys: Keys) -> Iterator[JwksServer]:
    srv = JwksServer()
    srv.keys = keys.jwks()
    srv.start()
    yield srv
    srv.stop()


def make_settings(server: JwksServer, algorithms: tuple[str, ...] = ("HS256", "ES256", "RS256")) -> Settings:
    return Settings(jwt_secret=SECRET, jwt_algorithms=algorithms, supabase_url=server.base_url, jwt_leeway=30)


@pytest.fixture()
def settings(server: JwksServer) -> Settings:
    return make_settings(server)


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture()
def verifier(settings: Settings, http: requests.Session, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(settings, session=http, clock=clock)


def claims_for(settings: Settings, now: float = START, **overrides: Any) -> dict[str, Any]:
    """A user access token's claims as GoTrue issues them; overrides of None delete the claim."""
    base: dict[str, Any] = {
        "iss": settings.jwt_issuer, "sub": str(uuid.uuid4()), "aud": "authenticated", "exp": int(now) + 3600,
        "iat": int(now), "email": "user@example.test", "phone": "", "app_metadata": {"provider": "email"},
        "user_metadata": {}, "role": "authenticated", "aal": "aal1",
        "amr": [{"method": "password", "timestamp": int(now)}], "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(settings: Settings, **overrides: Any) -> str:
    return encode({"alg": "HS256", "typ": "JWT"}, claims_for(settings, **overrides), hs256(SECRET))


def es_token(settings: Settings, keys: Keys, kid: str = "ec-1", **overrides: Any) -> str:
    return encode({"alg": "ES256", "typ": "JWT", "kid": kid}, claims_for(settings, **overrides), es256(keys.ec))


def rs_token(settings: Settings, keys: Keys, kid: str = "rsa-1", **overrides: Any) -> str:
    return encode({"alg": "RS256", "typ": "JWT", "kid": kid}, claims_for(settings, **overrides), rs256(keys.rsa))


def rejected(verifier: TokenVerifier, token: Any, code: str, cls: type[AppError] = Unauthorized) -> AppError:
    """Assert verify() raises `cls` with `code`, and that neither the token nor the secret leaks into it."""
    with pytest.raises(cls) as info:
        verifier.verify(token)
    exc = info.value
    assert type(exc) is cls
    assert exc.code == code
    text = str(exc) + exc.message
    assert SECRET not in text
    if isinstance(token, str) and len(token) > 8:
        assert token not in text
        assert all(part not in text for part in token.split(".") if len(part) > 8)
    return exc


# --- valid tokens ------------------------------------------------------------------------------------------------


def test_valid_hs256_token_verifies(verifier: TokenVerifier, settings: Settings, server: JwksServer) -> None:
    claims = claims_for(settings)
    token = encode({"alg": "HS256", "typ": "JWT"}, claims, hs256(SECRET))
    assert verifier.verify(token) == claims
    assert server.requests == 0  # HS256 never touches the JWKS


def test_minted_access_token_has_supabase_shape_and_verifies(verifier: TokenVerifier, settings: Settings) -> None:
    user_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    token = mint_access_token(settings, user_id=user_id, email="a@example.test",
                              app_metadata={"provider": "email", "role": "admin"}, user_metadata={"n": 1},
                              session_id=session_id, ttl=600, now=int(START))
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert verifier.verify(token) == {
        "iss": settings.jwt_issuer, "sub": user_id, "aud": "authenticated", "exp": int(START) + 600,
        "iat": int(START), "email": "a@example.test", "phone": "",
        "app_metadata": {"provider": "email", "role": "admin"}, "user_metadata": {"n": 1},
        "role": "authenticated", "aal": "aal1", "amr": [{"method": "password", "timestamp": int(START)}],
        "session_id": session_id, "is_anonymous": False,
    }


def test_minted_access_token_defaults_ttl_and_session_id(settings: Settings, http: requests.Session) -> None:
    token = mint_access_token(settings, user_id=str(uuid.uuid4()), email="a@example.test", app_metadata={},
                              user_metadata={}, now=int(START))
    claims = TokenVerifier(settings, session=http, clock=FakeClock()).verify(token)
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl
    uuid.UUID(claims["session_id"])


def test_mint_refuses_without_secret_or_with_non_uuid_user(settings: Settings) -> None:
    with pytest.raises(RuntimeError):
        mint_access_token(settings.with_overrides(jwt_secret=""), user_id=str(uuid.uuid4()), email="a@b.c",
                          app_metadata={}, user_metadata={})
    with pytest.raises(ValueError):
        mint_access_token(settings, user_id="admin", email="a@b.c", app_metadata={}, user_metadata={})


def test_valid_es256_token_verifies_via_jwks(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                             server: JwksServer) -> None:
    claims = claims_for(settings)
    token = encode({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}, claims, es256(keys.ec))
    assert verifier.verify(token) == claims
    assert verifier.verify(token) == claims
    assert server.requests == 1  # second verification served from the cache


def test_valid_rs256_token_verifies_via_jwks(verifier: TokenVerifier, settings: Settings, keys: Keys) -> None:
    claims = claims_for(settings)
    token = encode({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, claims, rs256(keys.rsa))
    assert verifier.verify(token) == claims


def test_audience_list_containing_authenticated_accepted(verifier: TokenVerifier, settings: Settings) -> None:
    assert verifier.verify(hs_token(settings, aud=["other", "authenticated"]))["sub"]


def test_explicit_jwks_url_setting_is_used(settings: Settings, server: JwksServer, keys: Keys,
                                           http: requests.Session) -> None:
    # The issuer points elsewhere, only jwks_url reaches the server.
    odd = settings.with_overrides(supabase_url="http://127.0.0.1:9", jwks_url=server.base_url + JWKS_PATH)
    verifier = TokenVerifier(odd, session=http, clock=FakeClock())
    assert verifier.verify(es_token(odd, keys))["role"] == "authenticated"
    assert server.requests == 1


# --- algorithm confusion and forged signatures -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
@pytest.mark.parametrize("with_signature", [False, True])
def test_alg_none_rejected(verifier: TokenVerifier, settings: Settings, alg: str, with_signature: bool) -> None:
    signer = hs256(SECRET) if with_signature else None
    token = encode({"alg": alg, "typ": "JWT"}, claims_for(settings), signer)
    rejected(verifier, token, "invalid_token")


@pytest.mark.parametrize("which", ["ec", "rsa"])
@pytest.mark.parametrize("kid", [None, "ec-1", "rsa-1"])
def test_hs256_signed_with_public_key_pem_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                   which: str, kid: str | None) -> None:
    pem = public_pem(keys.ec if which == "ec" else keys.rsa)
    header = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
    rejected(verifier, encode(header, claims_for(settings), hs256(pem)), "invalid_token")


def test_es256_header_with_rsa_key_id_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys) -> None:
    # A genuine RS256 signature under a header that lies about the alg: the key's own type decides.
    token = encode({"alg": "ES256", "kid": "rsa-1"}, claims_for(settings), rs256(keys.rsa))
    rejected(verifier, token, "invalid_token")


def test_rs256_header_with_ec_key_id_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys) -> None:
    token = encode({"alg": "RS256", "kid": "ec-1"}, claims_for(settings), es256(keys.ec))
    rejected(verifier, token, "invalid_token")


def test_es256_signed_by_another_key_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys) -> None:
    token = encode({"alg": "ES256", "kid": "ec-1"}, claims_for(settings), es256(keys.ec2))
    rejected(verifier, token, "invalid_token")


def test_hs256_signed_with_another_secret_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    token = encode({"alg": "HS256"}, claims_for(settings), hs256(SECRET[::-1]))
    rejected(verifier, token, "invalid_token")


@pytest.mark.parametrize("kind", ["hs", "es", "rs"])
def test_tampered_payload_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys, kind: str) -> None:
    token = {"hs": hs_token, "es": lambda s: es_token(s, keys), "rs": lambda s: rs_token(s, keys)}[kind](settings)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["app_metadata"] = {"role": "admin"}
    rejected(verifier, f"{header}.{b64json(claims)}.{signature}", "invalid_token")


def test_tampered_signature_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys) -> None:
    header, payload, signature = es_token(settings, keys).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    rejected(verifier, f"{header}.{payload}.{flipped}", "invalid_token")


def test_hs256_rejected_when_algorithms_exclude_it(server: JwksServer, http: requests.Session) -> None:
    settings = make_settings(server, ("ES256", "RS256"))
    verifier = TokenVerifier(settings, session=http, clock=FakeClock())
    rejected(verifier, hs_token(settings), "invalid_token")


def test_hs256_rejected_when_no_secret_configured(server: JwksServer, http: requests.Session) -> None:
    settings = make_settings(server).with_overrides(jwt_secret="")
    verifier = TokenVerifier(settings, session=http, clock=FakeClock())
    rejected(verifier, encode({"alg": "HS256"}, claims_for(settings), hs256(b"")), "invalid_token")


def test_es256_rejected_when_only_hs256_allowed(server: JwksServer, keys: Keys, http: requests.Session) -> None:
    settings = make_settings(server, ("HS256",))
    verifier = TokenVerifier(settings, session=http, clock=FakeClock())
    rejected(verifier, es_token(settings, keys), "invalid_token")
    rejected(verifier, rs_token(settings, keys), "invalid_token")
    assert server.requests == 0  # refused before any key lookup


def test_asymmetric_token_without_kid_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys) -> None:
    rejected(verifier, encode({"alg": "ES256"}, claims_for(settings), es256(keys.ec)), "invalid_token")


def test_crit_header_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    token = encode({"alg": "HS256", "crit": ["exp"], "exp": 1}, claims_for(settings), hs256(SECRET))
    rejected(verifier, token, "invalid_token")


# --- claims ------------------------------------------------------------------------------------------------------


def test_expired_token_rejected(verifier: TokenVerifier, settings: Settings, keys: Keys) -> None:
    rejected(verifier, hs_token(settings, exp=int(START) - 31), "token_expired")
    rejected(verifier, es_token(settings, keys, iat=int(START) - 7200, exp=int(START) - 3600), "token_expired")


def test_exp_within_leeway_accepted(verifier: TokenVerifier, settings: Settings) -> None:
    assert verifier.verify(hs_token(settings, exp=int(START) - 29))


def test_expiry_follows_the_clock(verifier: TokenVerifier, settings: Settings, clock: FakeClock) -> None:
    token = hs_token(settings)  # exp = START + 3600
    assert verifier.verify(token)
    clock.advance(3600 + 30)
    rejected(verifier, token, "token_expired")


def test_not_yet_valid_nbf_in_future_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    rejected(verifier, hs_token(settings, nbf=int(START) + 120), "token_not_yet_valid")
    assert verifier.verify(hs_token(settings, nbf=int(START) + 10))  # within leeway


def test_iat_in_future_beyond_leeway_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    rejected(verifier, hs_token(settings, iat=int(START) + 120), "token_not_yet_valid")
    assert verifier.verify(hs_token(settings, iat=int(START) + 10))  # within leeway


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_missing_time_claim_rejected(verifier: TokenVerifier, settings: Settings, claim: str) -> None:
    token = encode({"alg": "HS256"}, {k: v for k, v in claims_for(settings).items() if k != claim}, hs256(SECRET))
    rejected(verifier, token, "invalid_token")


@pytest.mark.parametrize("value", ["9999999999", True, None, [1], float("inf"), float("nan")])
def test_non_numeric_or_infinite_exp_rejected(verifier: TokenVerifier, settings: Settings, value: Any) -> None:
    claims = claims_for(settings)
    claims["exp"] = value  # json.dumps writes inf/nan as Infinity/NaN, which json.loads accepts
    rejected(verifier, encode({"alg": "HS256"}, claims, hs256(SECRET)), "invalid_token")


@pytest.mark.parametrize("aud", ["anon", "Authenticated", ["other"], [], {"aud": "authenticated"}, "missing"])
def test_wrong_audience_rejected(verifier: TokenVerifier, settings: Settings, aud: Any) -> None:
    claims = claims_for(settings)
    if aud == "missing":
        del claims["aud"]
    else:
        claims["aud"] = aud
    rejected(verifier, encode({"alg": "HS256"}, claims, hs256(SECRET)), "invalid_token")


@pytest.mark.parametrize("iss", ["supabase", "https://evil.example/auth/v1", "missing"])
def test_wrong_issuer_rejected(verifier: TokenVerifier, settings: Settings, iss: str) -> None:
    claims = claims_for(settings)
    if iss == "missing":
        del claims["iss"]
    else:
        claims["iss"] = iss
    rejected(verifier, encode({"alg": "HS256"}, claims, hs256(SECRET)), "invalid_token")


def test_trailing_slash_issuer_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    rejected(verifier, hs_token(settings, iss=settings.jwt_issuer + "/"), "invalid_token")


def test_anon_role_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    rejected(verifier, hs_token(settings, role="anon"), "invalid_token")


def test_legacy_service_role_key_rejected(verifier: TokenVerifier) -> None:
    # The legacy anon/service_role API keys: no sub, no aud, iss "supabase".
    claims = {"iss": "supabase", "ref": "abcdefghijklmnop", "role": "service_role", "iat": int(START),
              "exp": int(START) + 10 * 365 * 86400}
    rejected(verifier, encode({"alg": "HS256", "typ": "JWT"}, claims, hs256(SECRET)), "invalid_token")


def test_service_role_with_user_shape_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    rejected(verifier, hs_token(settings, role="service_role"), "invalid_token")


@pytest.mark.parametrize("sub", ["not-a-uuid", "", 123, "missing", "urn:uuid:" + str(uuid.UUID(int=1)),
                                 uuid.UUID(int=1).hex, "{" + str(uuid.UUID(int=1)) + "}"])
def test_non_uuid_sub_rejected(verifier: TokenVerifier, settings: Settings, sub: Any) -> None:
    claims = claims_for(settings)
    if sub == "missing":
        del claims["sub"]
    else:
        claims["sub"] = sub
    rejected(verifier, encode({"alg": "HS256"}, claims, hs256(SECRET)), "invalid_token")


@pytest.mark.parametrize("payload", [[1, 2], "string", 42])
def test_non_object_payload_rejected(verifier: TokenVerifier, payload: Any) -> None:
    rejected(verifier, encode({"alg": "HS256"}, payload, hs256(SECRET)), "invalid_token")


# --- malformed tokens --------------------------------------------------------------------------------------------


def _signed_raw(header_segment: str) -> str:
    payload = b64json({"sub": "x"})
    sig = b64url(hs256(SECRET)(f"{header_segment}.{payload}".encode()))
    return f"{header_segment}.{payload}.{sig}"


@pytest.mark.parametrize("token", [
    "", " ", "garbage", "a.b", "a.b.c.d", "a..c", "..", "!!!.e30.abc", "e30.e30.abc=", "e30.e30.ab c",
    "Bearer e30.e30.abc", None, 42, b"e30.e30.abc",
    _signed_raw(b64url(b"not json")), _signed_raw(b64url(b"[1,2]")), _signed_raw(b64url(b"\xff\xfe")),
    _signed_raw(b64json({"typ": "JWT"})), _signed_raw(b64json({"alg": 1})), _signed_raw("e30"),
    "e30." * 5000 + "e30",
], ids=lambda t: repr(t)[:30])
def test_malformed_token_rejected_not_500(verifier: TokenVerifier, token: Any) -> None:
    rejected(verifier, token, "invalid_token")


def test_oversized_token_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    rejected(verifier, hs_token(settings, user_metadata={"pad": "x" * 20000}), "invalid_token")


def test_bad_base64_payload_or_signature_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    header, payload, signature = hs_token(settings).split(".")
    rejected(verifier, f"{header}.{payload[:-1]}.{signature}", "invalid_token")
    rejected(verifier, f"{header}.{payload}.{signature[:-3]}", "invalid_token")
    rejected(verifier, f"{header}.{b64url(b'not json')}.{signature}", "invalid_token")


# --- JWKS: unknown kids, refetch throttle, availability ---------------------------------------------------------


def test_unknown_kid_rejected_after_one_refetch(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                server: JwksServer, clock: FakeClock) -> None:
    assert verifier.verify(es_token(settings, keys))
    assert server.requests == 1
    clock.advance(31)
    rejected(verifier, es_token(settings, keys, kid="nope"), "invalid_token")
    assert server.requests == 2  # exactly one refetch


def test_unknown_kid_on_first_use_fetches_once(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                               server: JwksServer) -> None:
    rejected(verifier, es_token(settings, keys, kid="nope"), "invalid_token")
    assert server.requests == 1


def test_key_added_to_jwks_later_is_picked_up_by_refetch(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                         server: JwksServer, clock: FakeClock) -> None:
    assert verifier.verify(es_token(settings, keys))
    server.keys = [*keys.jwks(), ec_jwk(keys.ec2, "ec-2")]  # a rotated-in key, well inside the 600 s TTL
    clock.advance(31)
    token = encode({"alg": "ES256", "kid": "ec-2"}, claims_for(settings, now=clock.now), es256(keys.ec2))
    assert verifier.verify(token)["role"] == "authenticated"
    assert server.requests == 2


def test_unknown_kid_refetch_is_throttled(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                          server: JwksServer, clock: FakeClock) -> None:
    assert verifier.verify(es_token(settings, keys))
    clock.advance(31)
    for _ in range(50):
        rejected(verifier, es_token(settings, keys, kid=secrets.token_hex(8)), "invalid_token")
        clock.advance(0.5)  # 25 s in all: still inside one throttle window
    assert server.requests == 2  # the initial fetch plus at most one refetch
    assert verifier.verify(es_token(settings, keys, now=clock.now))  # known keys keep working meanwhile
    clock.advance(6)
    rejected(verifier, es_token(settings, keys, kid="another", now=clock.now), "invalid_token")
    assert server.requests == 3  # a new window allows one more


def test_first_fetch_then_unknown_kid_is_throttled(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                   server: JwksServer) -> None:
    assert verifier.verify(es_token(settings, keys))
    for _ in range(10):
        rejected(verifier, es_token(settings, keys, kid=secrets.token_hex(8)), "invalid_token")
    assert server.requests == 1  # the fetch that just happened already counts


@pytest.mark.parametrize("outage", ["stopped", "http_500", "redirect"])
def test_jwks_unreachable_with_empty_cache_is_service_unavailable(verifier: TokenVerifier, settings: Settings,
                                                                  keys: Keys, server: JwksServer,
                                                                  outage: str) -> None:
    if outage == "stopped":
        server.stop()
    elif outage == "http_500":
        server.status = 500
    else:  # a redirect is not followed, even to a URL that would answer
        server.redirect_to = server.base_url + MOVED_PATH
    exc = rejected(verifier, es_token(settings, keys), "jwks_unavailable", ServiceUnavailable)
    assert exc.status == 503
    assert server.requests == (0 if outage == "stopped" else 1)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": {}}', b'{"keys": []' + b" " * 300_000 + b"}"],
                         ids=["not_json", "list", "keys_not_list", "too_large"])
def test_jwks_garbage_response_is_service_unavailable(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                      server: JwksServer, body: bytes) -> None:
    server.raw_body = body
    rejected(verifier, es_token(settings, keys), "jwks_unavailable", ServiceUnavailable)


def test_jwks_skips_unusable_entries(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                     server: JwksServer) -> None:
    good = ec_jwk(keys.ec, "ec-1")
    server.keys = [
        "junk", {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}, {**good, "kid": "enc", "use": "enc"},
        {**good, "kid": "p384", "crv": "P-384"}, {**good, "kid": "noverify", "key_ops": ["encrypt"]},
        {**good, "kid": "broken", "x": "AAAA"}, good,
    ]
    assert verifier.verify(es_token(settings, keys))
    for kid in ("hmac", "enc", "p384", "noverify", "broken"):
        rejected(verifier, es_token(settings, keys, kid=kid), "invalid_token")


def test_jwks_down_but_key_cached_still_verifies(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                 server: JwksServer, clock: FakeClock) -> None:
    assert verifier.verify(es_token(settings, keys))
    server.stop()
    clock.advance(300)
    assert verifier.verify(es_token(settings, keys, now=clock.now))
    assert verifier.verify(rs_token(settings, keys, now=clock.now))


def test_jwks_down_unknown_kid_is_service_unavailable(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                      server: JwksServer, clock: FakeClock) -> None:
    assert verifier.verify(es_token(settings, keys))
    server.status = 500
    clock.advance(31)
    rejected(verifier, es_token(settings, keys, kid="new", now=clock.now), "jwks_unavailable", ServiceUnavailable)


def test_stale_keys_serve_while_jwks_down_but_not_forever(verifier: TokenVerifier, settings: Settings,
                                                          keys: Keys, server: JwksServer,
                                                          clock: FakeClock) -> None:
    assert verifier.verify(es_token(settings, keys))
    server.status = 500
    clock.advance(601)  # past the TTL: a refetch is due and fails
    assert verifier.verify(es_token(settings, keys, now=clock.now))
    assert server.requests == 2
    clock.advance(3000)  # more than an hour after the last good fetch
    rejected(verifier, es_token(settings, keys, now=clock.now), "jwks_unavailable", ServiceUnavailable)


def test_ttl_expiry_refetches_and_drops_revoked_key(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                    server: JwksServer, clock: FakeClock) -> None:
    assert verifier.verify(es_token(settings, keys))
    server.keys = [rsa_jwk(keys.rsa, "rsa-1")]  # ec-1 revoked
    clock.advance(599)
    assert verifier.verify(es_token(settings, keys, now=clock.now))  # still inside the TTL
    clock.advance(2)
    rejected(verifier, es_token(settings, keys, now=clock.now), "invalid_token")
    assert server.requests == 2


def test_clear_cache_forces_refetch(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                    server: JwksServer) -> None:
    assert verifier.verify(es_token(settings, keys))
    server.keys = [rsa_jwk(keys.rsa, "rsa-1")]
    verifier.clear_cache()
    rejected(verifier, es_token(settings, keys), "invalid_token")
    assert server.requests == 2


def test_concurrent_first_verifications_fetch_jwks_once(verifier: TokenVerifier, settings: Settings, keys: Keys,
                                                        server: JwksServer) -> None:
    token = es_token(settings, keys)
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        try:
            results.append(verifier.verify(token)["sub"])
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8 and all(isinstance(r, str) for r in results)
    assert server.requests == 1


def test_verifier_without_session_creates_and_closes_its_own(settings: Settings, keys: Keys) -> None:
    verifier = TokenVerifier(settings, clock=FakeClock())
    try:
        assert verifier.verify(es_token(settings, keys))
    finally:
        verifier.close()
