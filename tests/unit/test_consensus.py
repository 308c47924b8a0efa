from __future__ import annotations

from typing import Any

import pytest

from engine.consensus import (
    FAILED,
    ConsensusError,
    ConsensusOptions,
    ConsensusResult,
    normalise_text,
    reconcile,
)


def test_unanimous_answers_have_full_likelihood_everywhere() -> None:
    answer = {"vendor": "ACME", "total": 12.5, "paid": True, "lines": [1, 2]}
    result = reconcile([answer, dict(answer), dict(answer)])
    assert result.value == answer
    assert result.likelihoods == {"vendor": 1.0, "total": 1.0, "paid": 1.0, "lines": [1.0, 1.0]}
    assert result.attempts == 3
    assert result.succeeded == 3


def test_result_as_dict() -> None:
    result = reconcile([True, True, False])
    assert result.as_dict() == {
        "value": True,
        "likelihoods": pytest.approx(2 / 3),
        "attempts": 3,
        "succeeded": 3,
    }


def test_boolean_majority_three_of_five() -> None:
    result = reconcile([True, False, True, False, True])
    assert result.value is True
    assert result.likelihoods == 0.6


def test_enum_majority_is_exact_vote() -> None:
    schema = {"type": "string", "enum": ["approved", "rejected", "review"]}
    result = reconcile(["review", "approved", "approved", "rejected", "approved"], schema=schema)
    assert result.value == "approved"
    assert result.likelihoods == 0.6


def test_enum_inside_object_schema() -> None:
    schema = {"type": "object", "properties": {"status": {"enum": ["A", "a"]}}}
    # Without the enum these would all normalise to the same string.
    result = reconcile([{"status": "a"}, {"status": "A"}, {"status": "A"}], schema=schema)
    assert result.value == {"status": "A"}
    assert result.likelihoods == {"status": pytest.approx(2 / 3)}


def test_numbers_cluster_within_tolerance() -> None:
    result = reconcile([100.0, 100.4, 99.8, 250, 100.2], options=ConsensusOptions())
    assert result.value == pytest.approx(100.1)
    assert isinstance(result.value, float)
    assert result.likelihoods == 0.8


def test_numbers_outside_tolerance_do_not_cluster() -> None:
    options = ConsensusOptions(number_tolerance=0.0025)
    result = reconcile([100.0, 100.4, 99.8, 250, 100.2], options=options)
    # 100.0 and 100.2 both gather three values; the earlier centre wins the tie, and 100.4
    # is too far from it.
    assert result.value == pytest.approx(100.0)
    assert result.likelihoods == 0.6


def test_integer_cluster_stays_integer() -> None:
    result = reconcile([1000, 1001, 1003, 5], options=ConsensusOptions(number_tolerance=0.01))
    assert result.value == 1001
    assert isinstance(result.value, int)
    assert result.likelihoods == 0.75


def test_even_integer_cluster_takes_lower_median() -> None:
    result = reconcile([1000, 1002], options=ConsensusOptions(number_tolerance=0.01))
    assert result.value == 1000
    assert result.likelihoods == 1.0


def test_exact_zero_and_tiny_numbers_cluster_absolutely() -> None:
    result = reconcile([0, 1e-12, 0.0, 5])
    assert result.value == 0.0
    assert result.likelihoods == 0.75


def test_bools_are_not_numbers() -> None:
    result = reconcile([1, True, True])
    assert result.value is True
    assert result.likelihoods == pytest.approx(2 / 3)


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="number_tolerance"):
        ConsensusOptions(number_tolerance=-0.1)


def test_string_normalisation() -> None:
    result = reconcile(["ACME Corp.", "acme corp", "Acme  Corp", "Globex", "ACME Corp."])
    assert result.value == "ACME Corp."
    assert result.likelihoods == 0.8


def test_most_common_spelling_wins_within_group() -> None:
    result = reconcile(["acme corp", "ACME Corp.", "ACME Corp.", " ACME\tCorp;"])
    assert result.value == "ACME Corp."
    assert result.likelihoods == 1.0


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("ACME Corp.", "acme corp"),
        ("  a \n b  ", "a b"),
        ("Straße", "strasse"),
        ("ﬁle,;:.", "file"),
        ("x . ", "x"),
    ],
)
def test_normalise_text(raw: str, normal: str) -> None:
    assert normalise_text(raw) == normal


def test_nested_objects_and_missing_keys() -> None:
    answers = [
        {"vendor": {"name": "ACME", "vat": "DE1"}, "total": 10},
        {"vendor": {"name": "acme", "vat": "DE1"}, "total": 10},
        {"vendor": {"name": "ACME"}, "total": 11, "note": "x"},
        {"vendor": {"name": "Initech", "vat": "DE1"}, "total": 10},
    ]
    result = reconcile(answers, options=ConsensusOptions(number_tolerance=0))
    assert result.value == {"vendor": {"name": "ACME", "vat": "DE1"}, "total": 10, "note": None}
    assert result.likelihoods == {
        "vendor": {"name": 0.75, "vat": 0.75},
        "total": 0.75,
        "note": 0.75,
    }
    assert list(result.value) == ["vendor", "total", "note"]


def test_object_replaced_by_null_counts_against_its_fields() -> None:
    result = reconcile([{"a": {"b": 1}}, {"a": {"b": 1}}, {"a": None}, {"a": {"b": 1}}])
    assert result.value == {"a": {"b": 1}}
    assert result.likelihoods == {"a": {"b": 0.75}}


def test_key_order_follows_first_attempt_then_new_keys() -> None:
    result = reconcile([{"b": 1, "a": 2}, {"a": 2, "c": 3, "b": 1}])
    assert list(result.value) == ["b", "a", "c"]
    assert list(result.likelihoods) == ["b", "a", "c"]


def _line(sku: str, qty: int) -> dict[str, Any]:
    return {"sku": sku, "qty": qty}


def test_list_of_objects_aligned_by_detected_key() -> None:
    answers = [
        {"lines": [_line("A", 1), _line("B", 2), _line("C", 3)]},
        {"lines": [_line("C", 3), _line("a", 1), _line("B", 2)]},
        {"lines": [_line("B", 2), _line("A", 1), _line("C", 4)]},
        {"lines": [_line("A", 1), _line("B", 5), _line("Z", 9)]},
        {"lines": [_line("A", 1), _line("C", 3)]},
    ]
    result = reconcile(answers)
    assert result.value == {"lines": [_line("A", 1), _line("B", 2), _line("C", 3)]}
    assert result.likelihoods == {
        "lines": [
            {"sku": 1.0, "qty": 1.0, "_presence": 1.0},
            {"sku": 1.0, "qty": 0.75, "_presence": 0.8},
            {"sku": 1.0, "qty": 0.75, "_presence": 0.8},
        ]
    }


def test_list_key_option_and_schema_key() -> None:
    answers = [
        [{"ref": "x", "v": 1}, {"ref": "y", "v": 2}],
        [{"ref": "y", "v": 2}, {"ref": "x", "v": 1}],
        [{"ref": "x", "v": 1}],
    ]
    expected = [{"ref": "x", "v": 1}, {"ref": "y", "v": 2}]
    by_option = reconcile(answers, options=ConsensusOptions(list_key="ref"))
    by_schema = reconcile(answers, schema={"type": "array", "x-consensus-key": "ref"})
    assert by_option.value == by_schema.value == expected
    assert by_option.likelihoods == [
        {"ref": 1.0, "v": 1.0, "_presence": 1.0},
        {"ref": 1.0, "v": 1.0, "_presence": pytest.approx(2 / 3)},
    ]
    # Without a key the items are aligned by position and disagree.
    by_position = reconcile(answers)
    assert by_position.value == [{"ref": "x", "v": 1}, {"ref": "y", "v": 2}]
    assert by_position.likelihoods[0] == {
        "ref": pytest.approx(2 / 3),
        "v": pytest.approx(2 / 3),
        "_presence": 1.0,
    }
    assert by_position.likelihoods[1] == {"ref": 0.5, "v": 0.5, "_presence": pytest.approx(2 / 3)}


def test_duplicate_key_values_fall_back_to_next_key() -> None:
    answers = [
        [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}],
        [{"id": 1, "name": "b"}, {"id": 1, "name": "a"}],
    ]
    result = reconcile(answers)
    assert result.value == [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]
    assert [lik["name"] for lik in result.likelihoods] == [1.0, 1.0]


def test_list_of_objects_aligned_by_position() -> None:
    answers = [
        [{"v": 1}, {"v": 2}],
        [{"v": 1}, {"v": 3}],
        [{"v": 1}],
    ]
    result = reconcile(answers)
    assert result.value == [{"v": 1}, {"v": 2}]
    assert result.likelihoods == [
        {"v": 1.0, "_presence": 1.0},
        {"v": 0.5, "_presence": pytest.approx(2 / 3)},
    ]


def test_list_of_scalars_aligned_by_position() -> None:
    result = reconcile([["a", 1, True], ["A", 1, False], ["a", 2, True]])
    assert result.value == ["a", 1, True]
    assert result.likelihoods == [1.0, pytest.approx(2 / 3), pytest.approx(2 / 3)]


def test_list_of_scalars_with_different_lengths_is_one_value() -> None:
    result = reconcile([["a", "b"], ["a"], ["A", "b."], ["a", "b", "c"]])
    assert result.value == ["a", "b"]
    assert result.likelihoods == 0.5


def test_mixed_types_vote_between_types() -> None:
    result = reconcile(["10", 10, 10.0, None])
    assert result.value == 10
    assert result.likelihoods == 0.5
    assert reconcile([1, 2, 3, "a", "a"]).value == "a"


def test_failed_attempts_are_excluded() -> None:
    result = reconcile([FAILED, {"a": 1}, FAILED, {"a": 1}, {"a": 2}])
    assert result.value == {"a": 1}
    assert result.likelihoods == {"a": pytest.approx(2 / 3)}
    assert result.attempts == 5
    assert result.succeeded == 3


def test_none_answer_is_not_a_failure() -> None:
    result = reconcile([None, None, {"a": 1}])
    assert result.value is None
    assert result.likelihoods == pytest.approx(2 / 3)
    assert result.succeeded == 3


@pytest.mark.parametrize("answers", [[FAILED, FAILED], []])
def test_all_failed_raises(answers: list[Any]) -> None:
    with pytest.raises(ConsensusError, match="attempts produced an answer"):
        reconcile(answers)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([False, True, True, False], False),
        (["b", "a", "a", "b"], "b"),
        ([3.0, 7.0], 3.0),
        ([None, "x"], None),
        ([["x"], ["y", "z"]], ["x"]),
    ],
)
def test_ties_go_to_earliest_attempt(answers: list[Any], expected: Any) -> None:
    result = reconcile(answers)
    assert result.value == expected
    assert result.likelihoods == 0.5


def test_result_does_not_share_input_objects() -> None:
    inner = ["x", {"y": 1}]
    result = reconcile([[inner], [inner, 2]])
    assert result.value == [inner]
    assert result.value[0] is not inner
    assert isinstance(result, ConsensusResult)
