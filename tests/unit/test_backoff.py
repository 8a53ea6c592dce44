"""common.backoff: the pauses every retry loop of Shoal takes."""

from __future__ import annotations

import pytest

from common.backoff import Backoff


def test_without_jitter_the_pause_doubles_to_the_maximum_and_reset_starts_over():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_jitter_fraction_spreads_the_pause_around_the_ceiling():
    low = Backoff(1.0, 8.0, jitter=0.2, random=lambda: 0.0)
    high = Backoff(1.0, 8.0, jitter=0.2, random=lambda: 0.999999)
    assert [round(low.next(), 6) for _ in range(3)] == [0.8, 1.6, 3.2]
    assert [round(high.next(), 3) for _ in range(3)] == [1.2, 2.4, 4.8]


def test_full_jitter_draws_from_zero_to_the_ceiling():
    draws = iter([0.5, 0.5, 0.25])
    backoff = Backoff(1.0, 10.0, jitter="full", random=lambda: next(draws))
    assert [backoff.next() for _ in range(3)] == [0.5, 1.0, 1.0]


def test_thousands_of_failures_stay_at_the_maximum():
    backoff = Backoff(0.1, 10.0)
    for _ in range(10_000):
        pause = backoff.next()
    assert pause == 10.0


@pytest.mark.parametrize("initial, maximum, jitter", [(0, 1, None), (2, 1, None), (-1, 1, None), (1, 2, 1.5)])
def test_nonsense_settings_are_refused(initial, maximum, jitter):
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, maximum, jitter=jitter)
