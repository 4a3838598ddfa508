"""Each Gopher quality rule fires on a crafted real-looking page and not on real prose."""

from __future__ import annotations

import pytest

from curation.filters import FilterConfig, evaluate_one

RULE = "gopher_quality."

HASHTAG_POST = (
    "Golden hour at the pier tonight, and the light over the water was unreal. "
    "#sunset #beach #travel #photography #goldenhour #nofilter #ocean #summer #vibes "
    "#instagood #wanderlust #naturelovers #travelgram #picoftheday #explore\n"
) * 4

TEASERS = "\n".join(
    f"{title}... Read more..."
    for title in (
        "The council voted on the new budget and",
        "Local team wins the cup after a dramatic",
        "Ten things you never knew about the",
        "Why experts say the housing market will",
        "She opened the letter and could not believe",
        "Scientists discover a new species of frog in the",
        "The best recipes for a quick weeknight dinner with",
        "How to save money on your energy bills this",
    )
)

GERMAN = (
    "Die Gedanken sind frei, wer kann sie erraten? Sie fliegen vorbei wie nächtliche Schatten. "
    "Kein Mensch kann sie wissen, kein Jäger erschießen. Es bleibet dabei: die Gedanken sind "
    "frei. Ich denke, was ich will und was mich beglücket, doch alles in der Still, und wie es "
    "sich schicket. Mein Wunsch und Begehren kann niemand verwehren, es bleibet dabei: die "
    "Gedanken sind frei. Und sperrt man mich ein im finsteren Kerker, das alles sind rein "
    "vergebliche Werke; denn meine Gedanken zerreißen die Schranken und Mauern entzwei."
)

PRICE_TABLE = "Price list 2024 for our stores\n" + "\n".join(
    f"{i:04d} 12.{i % 100:02d} 3.{i % 7}0 {1990 + i % 30} 0{i % 9}/{10 + i % 18} 4{i % 10}%"
    for i in range(40)
)

URL_LIST = "Downloads mirror index\n" + "\n".join(
    f"https://mirror{i}.example-downloads.org/releases/stable/package-{i}.{i + 1}.tar.gz "
    f"sha256:{'0123456789abcdef' * 4}"
    for i in range(30)
)

SHORT_WORDS = " ".join(["I am so in it. Go on, do it. He is at it. We go to it and be ok."] * 8)


def test_real_prose_passes_every_quality_rule(prose, paragraphs):
    for text in (prose, "\n\n".join(paragraphs)):
        result = evaluate_one(text, "web", FilterConfig())
        assert result.removed_by is None
        assert result.flags == []
        assert result.stats[RULE + "stop_words"] > 50


@pytest.mark.parametrize(
    ("rule", "text_factory"),
    [
        ("word_count", lambda paragraphs: paragraphs[0]),
        ("mean_word_length", lambda paragraphs: URL_LIST),
        ("mean_word_length", lambda paragraphs: SHORT_WORDS),
        ("hash_to_word_ratio", lambda paragraphs: HASHTAG_POST),
        ("ellipsis_to_word_ratio", lambda paragraphs: TEASERS),
        ("bullet_lines", lambda paragraphs: "\n".join("• " + p for p in paragraphs)),
        ("alphabetic_words", lambda paragraphs: PRICE_TABLE),
        ("stop_words", lambda paragraphs: GERMAN),
    ],
)
def test_rule_fires_on_crafted_page(only, paragraphs, rule, text_factory):
    text = text_factory(paragraphs)
    assert evaluate_one(text, "web", only("gopher_quality", rule)).removed_by == RULE + rule
    prose = "\n\n".join(paragraphs)
    assert evaluate_one(prose, "web", only("gopher_quality", rule)).removed_by is None


def test_ellipsis_lines_fires_when_lines_trail_off(only, paragraphs):
    # one ellipsis per long line keeps the per-word ratio low; the per-line rule still fires
    text = "\n".join(p[:150].rsplit(" ", 1)[0] + "…" for p in paragraphs)
    cfg = only("gopher_quality", "ellipsis_lines")
    result = evaluate_one(text, "web", cfg)
    assert result.removed_by == RULE + "ellipsis_lines"
    assert evaluate_one(text, "web", only("gopher_quality")).removed_by == RULE + "ellipsis_lines"


def test_word_count_upper_bound_counts_beyond_the_analysed_prefix(only, prose):
    cfg = only("gopher_quality", "word_count").model_copy(update={"max_analysis_chars": 10_000})
    huge = prose * 200  # ~111k words, only the first 10k characters are analysed
    result = evaluate_one(huge, "web", cfg)
    assert result.removed_by == RULE + "word_count"
    assert result.stats[RULE + "word_count"] > 100_000
    assert evaluate_one(prose * 150, "web", cfg).removed_by is None  # ~83k words


def test_thresholds_are_configurable(only, prose):
    cfg = only("gopher_quality", "word_count", word_count={"min_value": 1000})
    assert evaluate_one(prose, "web", cfg).removed_by == RULE + "word_count"
    cfg = only("gopher_quality", "stop_words", stop_word_list=["zebra"])
    assert evaluate_one(prose, "web", cfg).removed_by == RULE + "stop_words"
