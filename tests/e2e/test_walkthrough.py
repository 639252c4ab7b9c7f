"""All four services as real processes, driven over HTTP and through the SMS webhook, on both backends."""

from shared.demo import walk_through


def test_the_readme_walk_through_reaches_matched_and_is_counted(backend, capsys):
    result = walk_through(None, echo=print)
    assert result["request"]["status"] == "matched"
    today = result["activity"]["periods"][-1]["measures"]
    # one of each, which a manager sees suppressed
    assert (today["requests_received"], today["requests_matched"], today["active_volunteers"]) == ("<5",) * 3
    print(f"matched {result['seconds_to_matched']:.2f}s after the reply on {backend.name}")
