"""C4 rules: document rules on crafted pages, line rules feeding too_few_sentences, and the
optional text rewrite."""

from __future__ import annotations

from curation.filters import evaluate_one

NAV = "Home\nAbout us\nProducts\nContact\nLog in | Register\n"
JS = "Please enable JavaScript in your browser to view this page correctly.\n"
COOKIES = "This website uses cookies to improve your experience on the site.\n"
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua.\n"
)


def test_real_prose_passes_and_text_is_untouched_by_default(only, prose, paragraphs):
    for text in (prose, "\n".join(paragraphs)):
        result = evaluate_one(text, "web", only("c4"))
        assert result.removed_by is None
        assert result.text is None  # decision only: no rewrite unless modify_text


def test_lorem_ipsum_page_is_removed(only, paragraphs):
    page = NAV + "\n".join(paragraphs[:3]) + "\n" + LOREM + "\n".join(paragraphs[3:6])
    assert evaluate_one(page, "web", only("c4")).removed_by == "c4.lorem_ipsum"


def test_curly_bracket_in_a_kept_line_removes_the_page(only, paragraphs):
    template = "Write {name} where the name of the recipient should appear in the letter.\n"
    page = "\n".join(paragraphs[:4]) + "\n" + template
    assert evaluate_one(page, "web", only("c4")).removed_by == "c4.curly_bracket"
    # a brace on a line C4 drops anyway (no terminal punctuation) does not remove the page
    code_line = "    config = {'retries': 3}\n"
    page = "\n".join(paragraphs[:4]) + "\n" + code_line
    assert evaluate_one(page, "web", only("c4")).removed_by is None


def test_boilerplate_page_has_too_few_sentences(only, paragraphs):
    page = NAV + JS + COOKIES + "Terms of use. Privacy policy. Cookie policy.\n" + paragraphs[0]
    result = evaluate_one(page, "web", only("c4"))
    assert result.removed_by == "c4.too_few_sentences"
    assert result.stats["c4.too_few_sentences"] == 1


def test_line_rules_are_switchable(only):
    four = (
        "The meeting starts at nine in the main hall.\n"
        "Coffee will be served before the first talk.\n"
        "Please bring your badge with you.\n"
        "Parking is free for all visitors today.\n"
    )
    page = four + JS
    assert evaluate_one(page, "web", only("c4")).removed_by == "c4.too_few_sentences"
    cfg = only("c4", drop_javascript_lines=False)
    assert evaluate_one(page, "web", cfg).removed_by is None
    short = four + "Thank you.\n"  # two words: dropped by min_words_per_line=3
    assert evaluate_one(short, "web", only("c4")).removed_by == "c4.too_few_sentences"
    assert evaluate_one(short, "web", only("c4", min_words_per_line=2)).removed_by is None
    unpunctuated = four + "See the schedule below for details\n"
    assert evaluate_one(unpunctuated, "web", only("c4")).removed_by == "c4.too_few_sentences"
    cfg = only("c4", drop_lines_without_terminal_punctuation=False)
    assert evaluate_one(unpunctuated, "web", cfg).removed_by is None


def test_modify_text_keeps_only_clean_lines(only, paragraphs):
    cited = "The license was first published in 2007.[1] It is widely used.[citation needed]"
    page = NAV + JS + "\n".join(paragraphs[:4]) + "\n" + cited + "\n" + COOKIES
    result = evaluate_one(page, "web", only("c4", modify_text=True))
    assert result.removed_by is None
    assert result.text is not None
    lines = result.text.split("\n")
    assert lines[:4] == paragraphs[:4]
    assert lines[4] == "The license was first published in 2007. It is widely used."
    assert len(lines) == 5  # navigation, javascript and cookie lines are gone


def test_removed_document_gets_no_rewritten_text(only, paragraphs):
    page = "\n".join(paragraphs[:3]) + "\n" + LOREM
    result = evaluate_one(page, "web", only("c4", modify_text=True))
    assert result.removed_by == "c4.lorem_ipsum"
    assert result.text is None
