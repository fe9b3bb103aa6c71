"""compliance/tally_memo.py: a result is used again only while its stamp is the same."""

from __future__ import annotations

from compliance import tally_memo


def test_a_result_is_kept_while_its_stamp_stays_and_read_again_when_it_moves():
    computed = []

    def compute(value):
        def run():
            computed.append(value)
            return value

        return run

    assert tally_memo.remembered("k", (1, "a"), compute("first")) == "first"
    assert tally_memo.remembered("k", (1, "a"), compute("second")) == "first"
    assert tally_memo.remembered("k", (2, "a"), compute("third")) == "third"
    assert tally_memo.remembered("other", (2, "a"), compute("fourth")) == "fourth"
    assert computed == ["first", "third", "fourth"]
    tally_memo.forget()
    assert tally_memo.remembered("k", (2, "a"), compute("fifth")) == "fifth"


def test_the_oldest_results_are_dropped_past_the_limit():
    for n in range(tally_memo.MAX_ENTRIES + 5):
        tally_memo.remembered(("key", n), 0, lambda n=n: n)
    assert tally_memo.remembered(("key", 0), 0, lambda: "again") == "again"
    assert (
        tally_memo.remembered(("key", tally_memo.MAX_ENTRIES + 4), 0, lambda: "again")
        == tally_memo.MAX_ENTRIES + 4
    )
