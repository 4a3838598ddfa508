"""FineWeb rules on crafted pages; blank-line paragraph layout must not count against prose."""

from __future__ import annotations

from curation.filters import evaluate_one

RULE = "fineweb."


def test_real_prose_passes_in_both_layouts(only, prose, paragraphs):
    for text in (prose, "\n".join(paragraphs), "\n\n".join(paragraphs)):
        result = evaluate_one(text, "web", only("fineweb"))
        assert result.removed_by is None, result.stats


def test_headline_index_fails_line_punctuation(only):
    page = "\n".join(
        [
            "Council approves new budget for schools and public libraries",
            "Local football club celebrates promotion after dramatic final day",
            "Weather warning issued for the coast as storms move inland",
            "New bridge across the river opens to traffic next month",
            "Museum exhibition explores two hundred years of local history",
            "Farmers market returns to the town square every Saturday morning",
            "Police appeal for witnesses after collision on the main road",
            "University researchers publish study on coastal erosion rates",
            "Read the full story on our website today.",
        ]
    )
    result = evaluate_one(page, "web", only("fineweb"))
    assert result.removed_by == RULE + "line_punctuation"
    assert result.stats[RULE + "line_punctuation"] == 1 / 9


def test_short_lines_fire(only, paragraphs):
    ingredients = "\n".join(
        ["2 cups of flour.", "1 cup of sugar.", "3 large eggs.", "1 pinch of salt.",
         "200 ml of milk.", "50 g of butter.", "1 lemon, zested.", "Mix and bake."]
    )
    page = paragraphs[0] + "\n" + ingredients
    assert evaluate_one(page, "web", only("fineweb")).removed_by == RULE + "short_lines"
    cfg = only("fineweb", "short_lines", short_line_length=10)
    assert evaluate_one(page, "web", cfg).removed_by is None


def test_one_repeated_line_exceeds_fineweb_duplicate_char_threshold(only, paragraphs):
    footer = "Copyright 2024 Example News Ltd. All rights reserved."
    page = "\n".join([*paragraphs[:6], footer, *paragraphs[6:], footer])  # ~1.6% repeated
    published = only("fineweb", duplicate_line_chars={"max_value": 0.01},
                     duplicate_line_min_chars=0)
    result = evaluate_one(page, "web", published)
    assert result.removed_by == RULE + "duplicate_line_chars"
    assert evaluate_one("\n".join(paragraphs), "web", published).removed_by is None
    # the default tolerates one repeated footer (3%); three more copies exceed it
    assert evaluate_one(page, "web", only("fineweb")).kept
    assert not evaluate_one(page + f"\n{footer}" * 3, "web", only("fineweb")).kept


def test_list_like_page_fails_newline_ratio(only):
    glossary = "\n".join(
        ["Internationalization.", "Telecommunications.", "Decentralization.",
         "Interoperability.", "Characterization.", "Institutionalization.",
         "Electroencephalography.", "Compartmentalization."]
    )
    cfg = only("fineweb", "newline_to_word_ratio")
    assert evaluate_one(glossary, "web", cfg).removed_by == RULE + "newline_to_word_ratio"
