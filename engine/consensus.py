"""Field-by-field reconciliation of n parallel answers to the same question.

A step may ask a model the same thing n times; :func:`reconcile` merges the answers into one
value plus a *likelihood* per leaf: the share of succeeded attempts that agree with the value
chosen there (3 of 5 agreeing gives 0.6). Attempts marked :data:`FAILED` are left out of every
count; if none succeeded, :class:`ConsensusError` is raised.

Rules, applied recursively at each position of the answer:

* Values are first grouped by kind (null, bool, number, string, object, array, other). Each
  kind proposes a candidate with a *support* (how many attempts back it); the best supported
  candidate wins, ties going to the one seen first in attempt order. So mixed types are a
  majority vote between types, and ``[1, 2, 3, "a", "a"]`` yields ``"a"`` (support 2).
* Null, booleans, "other" values and any scalar whose schema has ``enum``: exact majority vote.
* Numbers (not bools): each value gathers the values within tolerance of it
  (``|a-b| <= tol * max(|a|, |b|)`` or ``|a-b| <= 1e-9``); the biggest gathering wins (tie:
  earliest), its value is the median, and its support is its size. An all-int cluster keeps an
  int by taking the lower median; otherwise the result is a float.
* Strings: grouped after normalisation (NFKC, casefold, whitespace collapsed and stripped,
  trailing ``.,;:`` removed); the value is the most common original spelling in the winning
  group (tie: earliest).
* Objects: merged per key over the union of keys, a missing key voting for None. Keys come in
  the first attempt's order, then new keys in order of appearance. Keys whose vote is None
  are kept, with value None. Likelihoods are a dict with the same keys.
* Arrays whose items are all objects are aligned by a key: ``options.list_key``, else the
  array schema's ``x-consensus-key``, else the first of :data:`AUTO_KEYS` present (not None)
  in every item of every attempt and unique within each attempt. An explicit key that fails
  those tests falls back to auto-detection. Key values are compared after string
  normalisation. Without a usable key items are aligned by position. An aligned item is kept
  when it appears in more than half of the attempts voting at this level; it is merged across
  the attempts that contain it, so its field likelihoods are shares of *those* attempts, and
  the share of attempts containing it is recorded as ``"_presence"`` in its likelihood dict
  (it is not multiplied into the field likelihoods). Items come in first-appearance order.
* Other arrays: aligned by position when every attempt has the same length (likelihoods are a
  list); otherwise the whole array is one value voted on by normalised JSON, and its
  likelihood is a single float covering the whole array.

In general ``likelihoods`` mirrors ``value``; a float where a container is expected covers the
whole subtree at that place. Nested likelihoods are shares of the attempts voting at that
level, which for object fields is all succeeded attempts (a None in place of an object counts
against each of its fields).
"""

from __future__ import annotations

import copy
import json
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AUTO_KEYS: tuple[str, ...] = ("id", "key", "name", "sku", "code", "title")
PRESENCE_KEY = "_presence"
_ABSOLUTE_TOLERANCE = 1e-9
_WHITESPACE = re.compile(r"\s+")

FAILED: Any = object()
"""Put this in the answer list for an attempt that produced no answer."""


class ConsensusError(ValueError):
    """No attempt produced an answer, so there is nothing to reconcile."""


@dataclass(frozen=True, kw_only=True)
class ConsensusOptions:
    number_tolerance: float = 0.01
    list_key: str | None = None

    def __post_init__(self) -> None:
        # A negative or NaN tolerance would silently make every number its own cluster.
        if not self.number_tolerance >= 0:
            raise ValueError("number_tolerance must be a non-negative number")


@dataclass(frozen=True, kw_only=True)
class ConsensusResult:
    value: Any
    likelihoods: Any
    attempts: int
    succeeded: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "likelihoods": self.likelihoods,
            "attempts": self.attempts,
            "succeeded": self.succeeded,
        }


@dataclass(frozen=True, kw_only=True)
class _Outcome:
    value: Any
    likelihood: Any
    support: int
    first: int


_DEFAULT_OPTIONS = ConsensusOptions()


def reconcile(
    answers: Sequence[Any],
    *,
    schema: Mapping[str, Any] | None = None,
    options: ConsensusOptions = _DEFAULT_OPTIONS,
) -> ConsensusResult:
    succeeded = [answer for answer in answers if answer is not FAILED]
    if not succeeded:
        raise ConsensusError(f"none of the {len(answers)} attempts produced an answer")
    outcome = _Merger(options).merge(succeeded, schema, len(succeeded))
    return ConsensusResult(
        value=outcome.value,
        likelihoods=outcome.likelihood,
        attempts=len(answers),
        succeeded=len(succeeded),
    )


def normalise_text(text: str) -> str:
    """The form two strings are compared in: equal here means the attempts agree."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    collapsed = _WHITESPACE.sub(" ", folded).strip()
    return collapsed.rstrip(".,;:").rstrip()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return "other"


def _sub_schema(schema: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    found = schema.get(name) if isinstance(schema, Mapping) else None
    return found if isinstance(found, Mapping) else None


def _canonical(value: Any, *, normalise: bool) -> Any:
    """A JSON-able stand-in; with ``normalise`` it equates values the rules call equal."""
    if isinstance(value, str):
        return normalise_text(value) if normalise else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        # 1 and 1.0 are the same answer once serialised.
        return (
            int(value) if normalise and isinstance(value, float) and value.is_integer() else value
        )
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, normalise=normalise) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v, normalise=normalise) for v in value]
    return repr(value)


def _dump(value: Any, *, normalise: bool) -> str:
    return json.dumps(_canonical(value, normalise=normalise), sort_keys=True, ensure_ascii=False)


def _align_token(value: Any) -> Hashable:
    if isinstance(value, str):
        return ("s", normalise_text(value))
    return ("j", _dump(value, normalise=True))


def _close(a: float, b: float, tolerance: float) -> bool:
    if a == b:
        return True
    try:
        gap = abs(a - b)
        return gap <= _ABSOLUTE_TOLERANCE or gap <= tolerance * max(abs(a), abs(b))
    except OverflowError:
        # Ints too big for a float are only equal to themselves.
        return False


def _vote(values: Sequence[Any], token: Callable[[Any], Hashable]) -> list[int]:
    """Indices of the biggest group of equal tokens; dicts keep insertion order, so ties
    go to the group seen first."""
    groups: dict[Hashable, list[int]] = {}
    for index, value in enumerate(values):
        groups.setdefault(token(value), []).append(index)
    best: list[int] = []
    for members in groups.values():
        if len(members) > len(best):
            best = members
    return best


def _most_common_spelling(
    values: Sequence[Any], members: Sequence[int], spelling: Callable[[Any], Hashable]
) -> Any:
    counts = Counter(spelling(values[i]) for i in members)
    top = max(counts.values())
    return next(values[i] for i in members if counts[spelling(values[i])] == top)


class _Merger:
    def __init__(self, options: ConsensusOptions) -> None:
        self.options = options

    def merge(
        self, values: Sequence[Any], schema: Mapping[str, Any] | None, total: int
    ) -> _Outcome:
        by_kind: dict[str, list[int]] = {}
        for index, value in enumerate(values):
            by_kind.setdefault(_kind(value), []).append(index)
        best: _Outcome | None = None
        for kind, members in by_kind.items():
            outcome = self._merge_kind(kind, [values[i] for i in members], schema, total)
            first = members[outcome.first]
            if best is None or (outcome.support, -first) > (best.support, -best.first):
                best = _Outcome(
                    value=outcome.value,
                    likelihood=outcome.likelihood,
                    support=outcome.support,
                    first=first,
                )
        if best is None:
            return _Outcome(value=None, likelihood=0.0, support=0, first=0)
        return best

    def _merge_kind(
        self, kind: str, values: list[Any], schema: Mapping[str, Any] | None, total: int
    ) -> _Outcome:
        if kind == "object":
            return self._merge_objects(values, schema, total)
        if kind == "array":
            return self._merge_arrays(values, schema, total)
        if isinstance(schema, Mapping) and "enum" in schema:
            return self._exact(values, total)
        if kind == "number":
            return self._merge_numbers(values, total)
        if kind == "string":
            members = _vote(values, normalise_text)
            value = _most_common_spelling(values, members, lambda s: s)
            return self._scalar(values, members, total, value=value)
        return self._exact(values, total)

    def _exact(self, values: Sequence[Any], total: int) -> _Outcome:
        members = _vote(values, lambda v: _dump(v, normalise=False))
        return self._scalar(values, members, total, value=values[members[0]])

    @staticmethod
    def _scalar(
        values: Sequence[Any], members: Sequence[int], total: int, *, value: Any
    ) -> _Outcome:
        return _Outcome(
            value=copy.deepcopy(value),
            likelihood=len(members) / total,
            support=len(members),
            first=members[0],
        )

    def _merge_numbers(self, values: Sequence[Any], total: int) -> _Outcome:
        tolerance = self.options.number_tolerance
        best: list[int] = []
        for centre in values:
            members = [j for j, other in enumerate(values) if _close(centre, other, tolerance)]
            if len(members) > len(best):
                best = members
        if not best:  # only NaNs, which are close to nothing
            best = [0]
        cluster = [values[i] for i in best]
        if all(isinstance(v, int) for v in cluster):
            value: float = statistics.median_low(cluster)
        else:
            value = float(statistics.median(cluster))
        return self._scalar(values, best, total, value=value)

    def _merge_objects(
        self, objects: Sequence[Mapping[Any, Any]], schema: Mapping[str, Any] | None, total: int
    ) -> _Outcome:
        keys = list(dict.fromkeys(key for obj in objects for key in obj))
        properties = _sub_schema(schema, "properties")
        extra = _sub_schema(schema, "additionalProperties")
        value: dict[Any, Any] = {}
        likelihoods: dict[Any, Any] = {}
        for key in keys:
            field_schema = (
                _sub_schema(properties, key) if properties and key in properties else extra
            )
            outcome = self.merge([obj.get(key) for obj in objects], field_schema, total)
            value[key] = outcome.value
            likelihoods[key] = outcome.likelihood
        return _Outcome(value=value, likelihood=likelihoods, support=len(objects), first=0)

    def _merge_arrays(
        self, arrays: Sequence[Sequence[Any]], schema: Mapping[str, Any] | None, total: int
    ) -> _Outcome:
        item_schema = _sub_schema(schema, "items")
        items = [item for array in arrays for item in array]
        if items and all(isinstance(item, Mapping) for item in items):
            return self._merge_object_arrays(arrays, schema, item_schema, total)
        if len({len(array) for array in arrays}) == 1:
            merged = [
                self.merge([array[p] for array in arrays], item_schema, total)
                for p in range(len(arrays[0]))
            ]
            return _Outcome(
                value=[o.value for o in merged],
                likelihood=[o.likelihood for o in merged],
                support=len(arrays),
                first=0,
            )
        members = _vote(arrays, lambda a: _dump(a, normalise=True))
        value = _most_common_spelling(arrays, members, lambda a: _dump(a, normalise=False))
        return self._scalar(arrays, members, total, value=list(value))

    def _merge_object_arrays(
        self,
        arrays: Sequence[Sequence[Mapping[Any, Any]]],
        schema: Mapping[str, Any] | None,
        item_schema: Mapping[str, Any] | None,
        total: int,
    ) -> _Outcome:
        key = self._alignment_key(arrays, schema)
        aligned: dict[Hashable, list[Mapping[Any, Any]]] = {}
        for array in arrays:
            for position, item in enumerate(array):
                slot = _align_token(item[key]) if key is not None else position
                aligned.setdefault(slot, []).append(item)
        value: list[Any] = []
        likelihoods: list[Any] = []
        for group in aligned.values():
            if len(group) * 2 <= total:
                continue
            outcome = self._merge_objects(group, item_schema, len(group))
            value.append(outcome.value)
            likelihoods.append({**outcome.likelihood, PRESENCE_KEY: len(group) / total})
        return _Outcome(value=value, likelihood=likelihoods, support=len(arrays), first=0)

    def _alignment_key(
        self, arrays: Sequence[Sequence[Mapping[Any, Any]]], schema: Mapping[str, Any] | None
    ) -> str | None:
        explicit = self.options.list_key
        if explicit is None and isinstance(schema, Mapping):
            declared = schema.get("x-consensus-key")
            explicit = declared if isinstance(declared, str) else None
        candidates = ([explicit] if explicit is not None else []) + list(AUTO_KEYS)
        for candidate in candidates:
            if all(_usable_key(array, candidate) for array in arrays):
                return candidate
        return None


def _usable_key(array: Sequence[Mapping[Any, Any]], key: str) -> bool:
    tokens = set()
    for item in array:
        if item.get(key) is None:
            return False
        tokens.add(_align_token(item[key]))
    return len(tokens) == len(array)
