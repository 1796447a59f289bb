"""Folder mapping: special uses, separators, collisions, plan rules, determinism."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmigrate.errors import FolderMappingError
from mailmigrate.folders import FolderPlan, map_folders, special_use_of
from mailmigrate.mailbox.base import Folder
from mailmigrate.plan import FolderRules

NO_RULES = FolderRules()


def folder(*path: str, use: str | None = None, **kwargs: bool) -> Folder:
    return Folder(path, ".".join(path), special_use=use, **kwargs)


def destinations(plan: FolderPlan) -> dict[tuple[str, ...], tuple[str, ...]]:
    return {m.source.path: m.destination for m in plan.mappings}


def mapping(plan: FolderPlan, *path: str):
    (found,) = [m for m in plan.mappings if m.source.path == path]
    return found


LEGACY = [
    folder("INBOX"),
    folder("Sent"),
    folder("Trash"),
    folder("Drafts"),
    folder("Junk"),
    folder("Archive"),
    folder("Projects"),
    folder("Projects", "2024"),
    folder("INBOX", "Customers"),
]
MODERN = [
    folder("INBOX"),
    folder("Sent", use="\\Sent"),
    folder("Trash", use="\\Trash"),
    folder("Drafts", use="\\Drafts"),
    folder("Junk", use="\\Junk"),
    folder("Archive", use="\\Archive"),
]
SAME_PATHS = {f.path: f.path for f in LEGACY}


def test_legacy_to_modern_keeps_paths_and_finds_uses():
    plan = map_folders(LEGACY, MODERN, NO_RULES, destination_separator="/")
    assert destinations(plan) == SAME_PATHS
    assert [m.destination for m in plan.mappings] == sorted(SAME_PATHS.values())
    uses = {m.destination: m.special_use for m in plan.mappings if m.special_use}
    assert uses == {
        ("Sent",): "\\Sent",
        ("Trash",): "\\Trash",
        ("Drafts",): "\\Drafts",
        ("Junk",): "\\Junk",
        ("Archive",): "\\Archive",
    }
    assert all(m.create_special_use is None and m.renamed is None for m in plan.mappings)
    assert plan.renames() == []


def test_modern_to_empty_legacy_creates_with_attributes():
    modern = [*MODERN, folder("Projects"), folder("Projects", "v1.2")]
    plan = map_folders(modern, [folder("INBOX")], NO_RULES, destination_separator=".")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Sent",): ("Sent",),
        ("Trash",): ("Trash",),
        ("Drafts",): ("Drafts",),
        ("Junk",): ("Junk",),
        ("Archive",): ("Archive",),
        ("Projects",): ("Projects",),
        ("Projects", "v1.2"): ("Projects", "v1_2"),
    }
    created = {m.destination: m.create_special_use for m in plan.mappings}
    assert created[("Sent",)] == "\\Sent"
    assert created[("Archive",)] == "\\Archive"
    assert created[("INBOX",)] is None and created[("Projects",)] is None
    assert mapping(plan, "Projects", "v1.2").renamed == (
        "'v1.2' contains the destination separator '.'"
    )


def test_modern_back_to_legacy_with_apple_style_names():
    legacy_destination = [
        folder("INBOX"),
        folder("Sent Messages"),
        folder("Deleted Messages"),
        folder("Drafts"),
    ]
    plan = map_folders(MODERN, legacy_destination, NO_RULES, destination_separator=".")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Sent",): ("Sent Messages",),
        ("Trash",): ("Deleted Messages",),
        ("Drafts",): ("Drafts",),
        ("Junk",): ("Junk",),
        ("Archive",): ("Archive",),
    }
    assert mapping(plan, "Sent").create_special_use is None
    assert mapping(plan, "Junk").create_special_use == "\\Junk"
    assert mapping(plan, "Sent").renamed == "special use \\Sent: the destination's 'Sent Messages'"


def test_german_and_french_exchange_names_to_modern():
    german = [
        folder("INBOX"),
        folder("Gesendete Objekte"),
        folder("Gesendete Objekte", "2023"),
        folder("Gelöschte Elemente"),
        folder("Junk-E-Mail"),
        folder("Entwürfe"),
        folder("Archiv"),
        folder("Kunden"),
    ]
    plan = map_folders(german, MODERN, NO_RULES, destination_separator="/")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Gesendete Objekte",): ("Sent",),
        ("Gesendete Objekte", "2023"): ("Sent", "2023"),
        ("Gelöschte Elemente",): ("Trash",),
        ("Junk-E-Mail",): ("Junk",),
        ("Entwürfe",): ("Drafts",),
        ("Archiv",): ("Archive",),
        ("Kunden",): ("Kunden",),
    }
    assert mapping(plan, "Gesendete Objekte", "2023").renamed == (
        "parent 'Gesendete Objekte' maps to 'Sent'"
    )
    french = [folder("INBOX"), folder("Éléments envoyés"), folder("Éléments supprimés")]
    plan = map_folders(french, MODERN, NO_RULES, destination_separator="/")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Éléments envoyés",): ("Sent",),
        ("Éléments supprimés",): ("Trash",),
    }


def test_legacy_to_exchange_style_names_without_attributes():
    exchange = [
        folder("INBOX"),
        folder("Sent Items"),
        folder("Deleted Items"),
        folder("Junk E-mail"),
    ]
    plan = map_folders(LEGACY, exchange, NO_RULES, destination_separator="/")
    assert destinations(plan) == {
        **SAME_PATHS,
        ("Sent",): ("Sent Items",),
        ("Trash",): ("Deleted Items",),
        ("Junk",): ("Junk E-mail",),
    }
    assert mapping(plan, "Drafts").create_special_use == "\\Drafts"


def test_special_use_of_attribute_first_then_names():
    assert special_use_of(folder("Stuff", use="\\Sent")) == "\\Sent"
    assert special_use_of(folder("Trash", use="\\sent")) == "\\Sent"
    assert special_use_of(folder("SENT ITEMS")) == "\\Sent"
    assert special_use_of(folder("INBOX", "Papierkorb")) == "\\Trash"
    assert special_use_of(folder("inbox", "Spam")) == "\\Junk"
    assert special_use_of(folder(unicodedata.normalize("NFD", "Éléments envoyés"))) == "\\Sent"
    assert special_use_of(folder("Projects", "Sent")) is None
    assert special_use_of(folder("INBOX")) is None
    assert special_use_of(folder("Sent", use="\\Important")) == "\\Sent"


def test_names_the_destination_refuses_are_fitted():
    def exchange_like(part: str) -> bool:
        return part == part.strip(" .") and all(c.isprintable() for c in part)

    source = [folder("INBOX"), folder("Notes."), folder("Tab\tName"), folder(" Lead", "x")]
    plan = map_folders(source, [], NO_RULES, destination_separator="/", valid_part=exchange_like)
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Notes.",): ("Notes_",),
        ("Tab\tName",): ("Tab_Name",),
        (" Lead",): ("_Lead",),
        (" Lead", "x"): ("_Lead", "x"),
    }
    assert mapping(plan, "Notes.").renamed == "'Notes.' is not a valid name on the destination"


def test_separator_inside_a_name_is_replaced_and_children_follow():
    source = [folder("INBOX"), folder("a/b"), folder("a/b", "c"), folder("x")]
    plan = map_folders(source, [folder("INBOX")], NO_RULES, destination_separator="/")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("a/b",): ("a_b",),
        ("a/b", "c"): ("a_b", "c"),
        ("x",): ("x",),
    }
    assert mapping(plan, "a/b").renamed == "'a/b' contains the destination separator '/'"
    assert mapping(plan, "a/b", "c").renamed == "parent 'a/b' maps to 'a_b'"


def test_collisions_never_merge_and_number_in_source_order():
    source = [
        folder("INBOX"),
        folder("a_b"),
        folder("a/b"),
        folder("a*b"),
        folder("a_b (2)"),
        folder("a/b", "child"),
    ]
    plan = map_folders(
        source, [], NO_RULES, destination_separator="/", valid_part=lambda p: "*" not in p
    )
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("a_b",): ("a_b",),
        ("a_b (2)",): ("a_b (2)",),
        ("a*b",): ("a_b (3)",),
        ("a/b",): ("a_b (4)",),
        ("a/b", "child"): ("a_b (4)", "child"),
    }
    assert mapping(plan, "a*b").renamed == (
        "'a*b' is not a valid name on the destination; 'a_b' is taken by source folder 'a_b'"
    )


def test_case_insensitive_destination_separates_names_differing_in_case():
    source = [folder("INBOX"), folder("Projects"), folder("projects"), folder("Projects", "x")]
    plan = map_folders(source, [], NO_RULES, destination_separator="/", case_sensitive=False)
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Projects",): ("Projects",),
        ("Projects", "x"): ("Projects", "x"),
        ("projects",): ("projects (2)",),
    }


def test_excludes_with_children_and_unmatched_rules():
    source = [
        *LEGACY,
        folder("Archive", "2019"),
        folder("Archive", "2019", "Q1"),
        folder("Projects", "Old"),
        folder("Projects", "Old", "x"),
    ]
    rules = FolderRules(exclude=("Junk", "Archive/*", "*/Old", "Nope*"))
    plan = map_folders(source, MODERN, rules, destination_separator="/")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("INBOX", "Customers"): ("INBOX", "Customers"),
        ("Sent",): ("Sent",),
        ("Trash",): ("Trash",),
        ("Drafts",): ("Drafts",),
        ("Archive",): ("Archive",),
        ("Projects",): ("Projects",),
        ("Projects", "2024"): ("Projects", "2024"),
    }
    assert [f.path for f in plan.excluded] == [
        ("Archive", "2019"),
        ("Archive", "2019", "Q1"),
        ("Junk",),
        ("Projects", "Old"),
        ("Projects", "Old", "x"),
    ]
    assert plan.unmatched_rules == ["exclude 'Nope*' matches no folder"]


def test_rename_rules_apply_to_children_and_win_over_special_use():
    source = [
        folder("INBOX"),
        folder("Old Stuff"),
        folder("Old Stuff", "a"),
        folder("Old Stuff", "a", "b"),
        folder("Sent", use="\\Sent"),
        folder("Sent Items"),
        folder("Sent", "2020"),
    ]
    rules = FolderRules(rename={"Old Stuff": "Archive/2019", "Sent": "Old Sent", "Missing": "X"})
    plan = map_folders(source, MODERN, rules, destination_separator="/")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Old Stuff",): ("Archive", "2019"),
        ("Old Stuff", "a"): ("Archive", "2019", "a"),
        ("Old Stuff", "a", "b"): ("Archive", "2019", "a", "b"),
        ("Sent",): ("Old Sent",),
        ("Sent", "2020"): ("Old Sent", "2020"),
        ("Sent Items",): ("Sent",),
    }
    assert mapping(plan, "Old Stuff").renamed == "plan rule"
    assert mapping(plan, "Sent").special_use is None
    assert mapping(plan, "Sent Items").special_use == "\\Sent"
    assert plan.unmatched_rules == ["rename 'Missing' matches no folder"]


def test_rename_rule_onto_an_existing_name_does_not_merge():
    source = [folder("INBOX"), folder("Projects"), folder("Proj"), folder("Proj", "x")]
    rules = FolderRules(rename={"Proj": "Projects", "Projects/": "Work/a.b"})
    plan = map_folders(source, [], rules, destination_separator=".")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("Projects",): ("Work", "a_b"),
        ("Proj",): ("Projects",),
        ("Proj", "x"): ("Projects", "x"),
    }
    assert mapping(plan, "Projects").renamed == (
        "plan rule; 'a.b' contains the destination separator '.'"
    )
    rules = FolderRules(rename={"Proj": "Projects"})
    plan = map_folders(source, [], rules, destination_separator=".")
    assert destinations(plan)[("Proj",)] == ("Projects (2)",)
    assert destinations(plan)[("Proj", "x")] == ("Projects (2)", "x")
    with pytest.raises(FolderMappingError, match="'a//b'"):
        map_folders(source, [], FolderRules(rename={"a//b": "c"}), destination_separator=".")


def test_non_ascii_names_kept_exact():
    names = ["Προσωπικά", "日本語", "Données", "Ünïcødé ✓", "Привет"]
    source = [folder("INBOX"), *(folder(n) for n in names), folder("日本語", "メモ")]
    plan = map_folders(source, MODERN, NO_RULES, destination_separator="/")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        **{(n,): (n,) for n in names},
        ("日本語", "メモ"): ("日本語", "メモ"),
    }
    assert plan.renames() == []


def test_two_source_folders_claiming_sent():
    both_attributes = [folder("Sent Items", use="\\Sent"), folder("Sent", use="\\Sent")]
    plan = map_folders(both_attributes, MODERN, NO_RULES, destination_separator="/")
    assert destinations(plan) == {("Sent",): ("Sent",), ("Sent Items",): ("Sent Items",)}
    assert mapping(plan, "Sent Items").special_use is None

    attribute_beats_name = [folder("Sent"), folder("Gesendet", use="\\Sent")]
    plan = map_folders(attribute_beats_name, MODERN, NO_RULES, destination_separator="/")
    assert destinations(plan) == {("Gesendet",): ("Sent",), ("Sent",): ("Sent (2)",)}
    assert mapping(plan, "Sent").renamed == "'Sent' is taken by source folder 'Gesendet'"

    exchange = [folder("Sent Items", use="\\Sent")]
    source = [folder("Sent", use="\\Sent"), folder("Sent Items")]
    plan = map_folders(source, exchange, NO_RULES, destination_separator="/")
    assert destinations(plan) == {("Sent",): ("Sent Items",), ("Sent Items",): ("Sent Items (2)",)}


def test_inbox_any_case_and_its_children():
    source = [folder("inbox"), folder("Inbox", "Customers"), folder("INBOX", "Sent")]
    plan = map_folders(source, MODERN, NO_RULES, destination_separator="/")
    assert destinations(plan) == {
        ("inbox",): ("INBOX",),
        ("Inbox", "Customers"): ("INBOX", "Customers"),
        ("INBOX", "Sent"): ("Sent",),
    }
    assert mapping(plan, "inbox").renamed is None


def test_containers_implicit_parents_and_subscriptions():
    source = [
        folder("INBOX"),
        folder("Lists", selectable=False),
        folder("Lists", "dev", subscribed=False),
        folder("Deep", "er", "est"),
    ]
    plan = map_folders(source, [], NO_RULES, destination_separator="/")
    assert [m.destination for m in plan.mappings] == [
        ("Deep",),
        ("Deep", "er"),
        ("Deep", "er", "est"),
        ("INBOX",),
        ("Lists",),
        ("Lists", "dev"),
    ]
    flags = {m.destination: (m.source.selectable, m.source.subscribed) for m in plan.mappings}
    assert flags[("Lists",)] == (False, True)
    assert flags[("Lists", "dev")] == (True, False)
    assert flags[("Deep",)] == (False, False)  # synthesized level
    assert flags[("Deep", "er", "est")] == (True, True)


def test_virtual_all_folder_is_not_mapped_onto_the_destination_all():
    source = [folder("INBOX"), folder("[Gmail]", selectable=False)]
    source += [
        folder("[Gmail]", "All Mail", use="\\All"),
        folder("[Gmail]", "Sent Mail", use="\\Sent"),
    ]
    destination = [*MODERN, folder("Virtual", "All", use="\\All")]
    plan = map_folders(source, destination, NO_RULES, destination_separator="/")
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("[Gmail]",): ("[Gmail]",),
        ("[Gmail]", "All Mail"): ("[Gmail]", "All Mail"),
        ("[Gmail]", "Sent Mail"): ("Sent",),
    }
    assert mapping(plan, "[Gmail]", "All Mail").special_use == "\\All"
    assert mapping(plan, "[Gmail]", "All Mail").create_special_use is None


def test_previous_pass_keeps_destinations_stable():
    earlier = [folder("INBOX"), folder("a/b"), folder("a/b", "c"), folder("Sent Items")]
    first = map_folders(earlier, MODERN, NO_RULES, destination_separator="/")
    assert destinations(first) == {
        ("INBOX",): ("INBOX",),
        ("a/b",): ("a_b",),
        ("a/b", "c"): ("a_b", "c"),
        ("Sent Items",): ("Sent",),
    }
    later = [*earlier, folder("a_b"), folder("Sent")]
    fresh = map_folders(later, MODERN, NO_RULES, destination_separator="/")
    assert destinations(fresh)[("a/b",)] == ("a_b (2)",)
    assert destinations(fresh)[("Sent",)] == ("Sent",)
    kept = map_folders(
        later, MODERN, NO_RULES, destination_separator="/", previous=first.destinations()
    )
    assert destinations(kept) == {
        ("INBOX",): ("INBOX",),
        ("a/b",): ("a_b",),
        ("a/b", "c"): ("a_b", "c"),
        ("a_b",): ("a_b (2)",),
        ("Sent Items",): ("Sent",),
        ("Sent",): ("Sent (2)",),
    }
    assert mapping(kept, "a/b").renamed == "'a/b' contains the destination separator '/'"
    assert mapping(kept, "a/b", "c").renamed == "parent 'a/b' maps to 'a_b'"
    assert mapping(kept, "a_b").renamed == "'a_b' is taken by source folder 'a/b'"
    assert mapping(kept, "Sent Items").renamed == "special use \\Sent: the destination's 'Sent'"
    assert mapping(kept, "Sent Items").special_use == "\\Sent"
    assert mapping(kept, "Sent").special_use is None
    assert mapping(kept, "Sent").renamed == "'Sent' is taken by source folder 'Sent Items'"


def test_to_dict_is_json():
    rules = FolderRules(exclude=("Junk",))
    plan = map_folders(LEGACY, MODERN, rules, destination_separator="/")
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["excluded"] == [["Junk"]]
    assert data["mappings"][0] == {
        "source": ["Archive"],
        "source_name": "Archive",
        "destination": ["Archive"],
        "special_use": "\\Archive",
        "create_special_use": None,
        "renamed": None,
        "subscribed": True,
        "selectable": True,
    }


MIXED = [
    folder("INBOX"),
    folder("inbox", "Sent"),
    folder("Sent", use="\\Sent"),
    folder("Sent Items"),
    folder("Gesendete Objekte", "2023"),
    folder("a/b"),
    folder("a_b"),
    folder("a.b"),
    folder("Projects", "v1.2"),
    folder("Junk", selectable=False),
    folder("Spam"),
]


@settings(max_examples=60, deadline=None)
@given(st.permutations(MIXED), st.permutations([*MODERN, folder("Gesendete Objekte")]))
def test_same_plan_for_any_input_order(source, destination):
    rules = FolderRules(rename={"Spam": "Junk/old"})
    plan = map_folders(source, destination, rules, destination_separator=".")
    expected = map_folders(MIXED, MODERN, rules, destination_separator=".")
    assert plan == expected
    assert destinations(plan) == {
        ("INBOX",): ("INBOX",),
        ("inbox", "Sent"): ("INBOX", "Sent"),
        ("Sent",): ("Sent",),
        ("Sent Items",): ("Sent Items",),
        ("Gesendete Objekte",): ("Gesendete Objekte",),
        ("Gesendete Objekte", "2023"): ("Gesendete Objekte", "2023"),
        ("a/b",): ("a/b",),
        ("a_b",): ("a_b",),
        ("a.b",): ("a_b (2)",),
        ("Projects",): ("Projects",),
        ("Projects", "v1.2"): ("Projects", "v1_2"),
        ("Junk",): ("Junk",),
        ("Spam",): ("Junk", "old"),
    }


names = st.sampled_from(["Sent", "sent", "Trash", "a.b", "a_b", "a_b (2)", "x/y", "", "INBOX", "é"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(names, min_size=1, max_size=3).map(tuple), max_size=12))
def test_every_folder_mapped_once_to_a_distinct_valid_path(paths):
    source = [Folder(p, ".".join(p)) for p in paths]
    plan = map_folders(source, MODERN, FolderRules(), destination_separator=".")
    mapped = [m.destination for m in plan.mappings]
    assert len(set(mapped)) == len(mapped)
    assert mapped == sorted(mapped)
    assert all(part and "." not in part for path in mapped for part in path)
    assert set(paths) <= {m.source.path for m in plan.mappings}


def test_previous_pass_wins_over_a_changed_rule():
    source = [folder("INBOX"), folder("Old"), folder("Old", "x")]
    first = map_folders(
        source, [], FolderRules(rename={"Old": "Archive/Old"}), destination_separator="/"
    )
    assert destinations(first)[("Old", "x")] == ("Archive", "Old", "x")
    later = map_folders(
        source, [], NO_RULES, destination_separator="/", previous=first.destinations()
    )
    assert destinations(later) == {
        ("INBOX",): ("INBOX",),
        ("Old",): ("Archive", "Old"),
        ("Old", "x"): ("Archive", "Old", "x"),
    }
    assert mapping(later, "Old").renamed == "kept as mapped by an earlier pass"
    assert mapping(later, "Old", "x").renamed == "parent 'Old' maps to 'Archive/Old'"
