"""All four services as real processes, driven over HTTP and through the SMS webhook, on both backends."""

from shared.demo import walk_through


def test_the_readme_walk_through_reaches_matched_and_is_counted(backend, capsys):
    result = walk_through(None, echo=print)
    assert result["request"]["status"] == "matched"
    totals = result["activity"]["totals"]
    assert totals["request.submitted"] == 1
    assert totals["offer.made"] == 1
    assert totals["request.matched"] == 1
    print(f"matched {result['seconds_to_matched']:.2f}s after the reply on {backend.name}")
