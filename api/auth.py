"""Bearer API keys on every /v1 route (checked keys are cached: see api.keycache)."""

from __future__ import annotations

from flask import g, request

from api.problems import ApiProblem
from api.runtime import runtime
from engine.auth import Principal, authenticate


def require_principal() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="quorum"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(
            401, "an API key is required: Authorization: Bearer <key>", headers=challenge
        )
    token = token.strip()
    rt = runtime()
    cache = rt.key_cache()
    found = cache.get(token) if cache is not None else None
    if found is None:
        generation = cache.generation if cache is not None else 0
        with rt.db.autocommit() as s:
            found = authenticate(s, token)
        if found is not None and cache is not None:
            cache.put(token, found, generation)
    if found is None:
        challenge["WWW-Authenticate"] += ', error="invalid_token"'
        raise ApiProblem(401, "the API key is unknown, malformed or revoked", headers=challenge)
    g.principal = found


def current() -> Principal:
    p: Principal = g.principal
    return p
