"""The plan's ``kinds`` and ``groupware`` keys: values, and every mistake at its file:line."""

from __future__ import annotations

from test_plan import plan_file, problems

from mailmigrate.plan import load_plan

GROUPWARE = """\
kinds: [mail, calendars, contacts]
groupware:
  source: {connection: acme_old_dav}
  destination: {connection: acme_new_dav}
  propagate_deletions: true
"""


def test_kinds_default_to_mail_and_groupware_loads(tmp_path):
    assert load_plan(plan_file(tmp_path)).kinds == ("mail",)
    assert load_plan(plan_file(tmp_path)).groupware is None
    plan = load_plan(plan_file(tmp_path, GROUPWARE))
    assert plan.kinds == ("mail", "calendars", "contacts")
    assert plan.groupware.source_connection == "acme_old_dav"
    assert plan.groupware.destination_connection == "acme_new_dav"
    assert plan.groupware.propagate_deletions is True


def test_kind_mistakes_at_their_lines(tmp_path):
    path = plan_file(tmp_path, "kinds: [mail, calender, mail]\n")
    assert problems(path) == [
        'acme.yaml:5: kinds: unknown kind "calender"; did you mean "calendars"? '
        "(known: mail, calendars, contacts, tasks)",
        'acme.yaml:5: kinds: "mail" given twice',
    ]
    assert problems(plan_file(tmp_path, "kinds: []\n")) == [
        "acme.yaml:5: kinds: must name at least one of mail, calendars, contacts, tasks"
    ]


def test_groupware_kinds_and_section_go_together(tmp_path):
    assert problems(plan_file(tmp_path, "kinds: [calendars]\n")) == [
        "acme.yaml:5: kinds: calendars need a groupware section naming the DAV connections, "
        "e.g. groupware: {source: {connection: acme_old_dav}, destination: "
        "{connection: acme_new_dav}}"
    ]
    section = GROUPWARE.replace("kinds: [mail, calendars, contacts]\n", "")
    assert problems(plan_file(tmp_path, section)) == [
        "acme.yaml:6: groupware: given, but kinds names none of calendars, contacts, tasks; "
        "add them, e.g. kinds: [mail, calendars, contacts]"
    ]
    broken = GROUPWARE.replace("  destination: {connection: acme_new_dav}\n", "").replace(
        "propagate_deletions: true", "propagate_deletions: maybe"
    )
    assert problems(plan_file(tmp_path, broken)) == [
        "acme.yaml:7: groupware.destination: missing; name the Airflow connection of this side, "
        "e.g. groupware.destination: {connection: acme_new}",
        'acme.yaml:8: groupware.propagate_deletions: "maybe" must be true or false',
    ]
