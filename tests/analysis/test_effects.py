"""Cliff's delta and its confidence interval against values computed by hand."""

from __future__ import annotations

import math

import pytest
from infpop_analysis.effects import cliffs_delta


def test_delta_variance_and_interval_match_a_hand_computation() -> None:
    # x = [3, 4, 5], y = [1, 4]. Dominance matrix sign(x_i - y_j), rows x, columns y:
    #   3: [+1, -1]   4: [+1, 0]   5: [+1, +1]           -> d = 3/6 = 0.5
    # row means (0, 0.5, 1), column means (1, 0); n = 3, m = 2.
    # Cliff (1993): s2 = (m^2 * sum (row - d)^2 + n^2 * sum (col - d)^2 - sum (d_ij - d)^2) / (n m (n-1)(m-1))
    #                  = (4 * 0.5 + 9 * 0.5 - 3.5) / 12 = 0.25  (floor (1 - d^2)/(nm - 1) = 0.15 does not bind)
    # Feng & Cliff interval, z = 1.959964: centre d - d^3 = 0.375, z^2 s2 = 0.960365,
    #   half = z s sqrt((1 - d^2)^2 + z^2 s2) = 1.959964 * 0.5 * sqrt(0.5625 + 0.960365) = 1.209337,
    #   denominator 1 - d^2 + z^2 s2 = 1.710365  -> [(0.375 - 1.209337), (0.375 + 1.209337)] / 1.710365
    cd = cliffs_delta([3, 4, 5], [1, 4])
    assert cd.delta == 0.5
    assert cd.variance == pytest.approx(0.25)
    assert cd.ci_low == pytest.approx(-0.487814, abs=1e-5)
    assert cd.ci_high == pytest.approx(0.926310, abs=1e-5)
    assert (cd.n_x, cd.n_y) == (3, 2)


def test_a_published_textbook_example() -> None:
    # The example of R's effsize documentation: delta = -0.25, "small".
    cd = cliffs_delta([10, 10, 20, 20, 20, 30, 30, 30, 40, 50], [10, 20, 30, 40, 40, 50])
    assert cd.delta == pytest.approx(-0.25)
    assert cd.magnitude == "small"
    assert cd.ci_low < -0.25 < cd.ci_high


def test_swapping_the_samples_mirrors_estimate_and_interval() -> None:
    a, b = [1.0, 2.5, 3.0, 7.0], [2.0, 2.5, 4.0]
    ab, ba = cliffs_delta(a, b), cliffs_delta(b, a)
    assert ab.delta == pytest.approx(-ba.delta)
    assert (ab.ci_low, ab.ci_high) == pytest.approx((-ba.ci_high, -ba.ci_low))
    assert -1 <= ab.ci_low <= ab.delta <= ab.ci_high <= 1


def test_complete_dominance_and_too_small_samples() -> None:
    full = cliffs_delta([5, 6, 7], [1, 2])
    assert full.delta == 1.0 and full.magnitude == "large"
    assert full.variance == 0 and (full.ci_low, full.ci_high) == (1.0, 1.0)
    single = cliffs_delta([2.0], [1.0])
    assert single.delta == 1.0 and math.isnan(single.ci_low)
    with pytest.raises(ValueError, match="NaN"):
        cliffs_delta([1.0, float("nan")], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        cliffs_delta([], [1.0])
