"""The verdicts of the paper check are computed: each recognised kind of disagreement is named
only when the numbers show it (pure functions, milliseconds; the published data's verdicts are
checked in test_stats.py when ../shared is present)."""

from __future__ import annotations

from infpop_analysis.claims import NO_EXPONENT, SHIFTED, SWAPPED, Claim, mean_median, printed_p, shifted_rows


def test_a_printed_p_value_agrees_or_is_a_mantissa_without_its_exponent() -> None:
    assert printed_p("0.002", 0.00213) == (True, None)
    assert printed_p("0.77", 0.7737) == (True, None)
    assert printed_p("2.01", 2.019317e-116) == (False, NO_EXPONENT), "truncated mantissa"
    assert printed_p("3.89", 3.885662e-60) == (False, NO_EXPONENT), "rounded mantissa"
    assert printed_p("2.01", 2.5e-116) == (False, None), "another mantissa: just wrong"
    assert printed_p("2.01", 0.3) == (False, None)
    assert printed_p("0.05", 0.5) == (False, None), "one digit off is not a missing exponent"


def test_mean_and_median_agree_or_are_swapped() -> None:
    assert mean_median((7.26, 4.80), [(7.25, 4.81)], 0.02) == (True, None)
    assert mean_median((4.3, 6.47), [(6.46, 4.28), (6.47, 4.30)], 0.05) == (False, SWAPPED)
    assert mean_median((4.3, 6.47), [(5.0, 4.28)], 0.05) == (False, None)


def test_a_column_agrees_or_is_shifted_one_row() -> None:
    got = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert shifted_rows({"b": 2, "d": 4}, got, list(got)) == (True, None)
    assert shifted_rows({"b": 1, "d": 3}, got, list(got)) == (False, SHIFTED)
    assert shifted_rows({"b": 1, "d": 4}, got, list(got)) == (False, None), "one row shifted is no pattern"
    assert shifted_rows({"a": 9}, got, list(got)) == (False, None), "the first row has none above"


def test_the_verdict_says_what_the_disagreement_is() -> None:
    assert Claim("w", "s", "2.01", "2.0e-116", False, NO_EXPONENT).verdict == "no: printed without its exponent"
    assert Claim("w", "s", "1", "1", True).verdict == "yes" and Claim("w", "s", "1", "2", False).verdict == "no"
