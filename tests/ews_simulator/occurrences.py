"""Occurrences of recurring calendar items in the EWS simulator: ``OccurrenceItemId``
(``RecurringMasterId`` + 1-based ``InstanceIndex``) as exchangelib's ``item.occurrence(n)``
sends it to DeleteItem (cancel that instance: a ``DeletedOccurrence`` on the master) and to
UpdateItem (change it: an exception item, listed in the master's ``ModifiedOccurrences``).

Instances are expanded from the master's stored ``Recurrence`` (daily, weekly by days, monthly
and yearly by date or by n-th weekday; numbered, end-date or no end) in the master's start time zone, with
python-dateutil, so the n-th instance keeps its wall-clock time across a DST change as on
Exchange. Other patterns are refused with ``ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange``
rather than guessed.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from dateutil import rrule
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP
from lxml import etree

from .soap import ResponseError, SoapFault, t
from .store import StoredItem, StoredMailbox
from .typed import _field, cancel_occurrence, move_occurrence

DAYS = {"Monday": rrule.MO, "Tuesday": rrule.TU, "Wednesday": rrule.WE, "Thursday": rrule.TH,
        "Friday": rrule.FR, "Saturday": rrule.SA, "Sunday": rrule.SU}  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
OUT_OF_RANGE = "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange"


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def instance_start(master: StoredItem, index: int) -> dt.datetime:
    """The original start (UTC) of the master's ``index``-th instance (1-based)."""
    recurrence = _field(master, "Recurrence")
    start, zone = _field(master, "Start"), _field(master, "StartTimeZone")
    if recurrence is None or start is None or len(recurrence) != 2:
        raise ResponseError(OUT_OF_RANGE, "The item is not a recurring master.")
    name = zone.get("Id") if zone is not None else "UTC"
    tz = zoneinfo.ZoneInfo(MS_TIMEZONE_TO_IANA_MAP.get(name, name if "/" in name else "UTC"))
    local = _utc(start.text).astimezone(tz).replace(tzinfo=None)
    pattern, boundary = recurrence
    kind = etree.QName(pattern).localname
    interval = int(pattern.findtext(t("Interval")) or 1)
    options: dict = {"dtstart": local, "interval": interval}
    if kind == "DailyRecurrence":
        freq = rrule.DAILY
    elif kind == "WeeklyRecurrence":
        freq = rrule.WEEKLY
        options["byweekday"] = [DAYS[d] for d in (pattern.findtext(t("DaysOfWeek")) or "").split()]
    elif kind == "AbsoluteMonthlyRecurrence":
        freq, options["bymonthday"] = rrule.MONTHLY, int(pattern.findtext(t("DayOfMonth")))
    elif kind == "AbsoluteYearlyRecurrence":
        freq, options["bymonthday"] = rrule.YEARLY, int(pattern.findtext(t("DayOfMonth")))
        options["bymonth"] = MONTHS.index(pattern.findtext(t("Month")) or "January") + 1
        options.pop("interval")
    elif kind in ("RelativeMonthlyRecurrence", "RelativeYearlyRecurrence"):
        week = ["First", "Second", "Third", "Fourth", "Last"].index(
            pattern.findtext(t("DayOfWeekIndex")) or "First") + 1  # fmt: skip
        day = DAYS[(pattern.findtext(t("DaysOfWeek")) or "").strip()]
        options["byweekday"] = [day(-1 if week == 5 else week)]
        freq = rrule.MONTHLY
        if kind == "RelativeYearlyRecurrence":
            freq, options["bymonth"] = rrule.YEARLY, MONTHS.index(pattern.findtext(t("Month"))) + 1
            options.pop("interval")
    else:
        raise ResponseError(OUT_OF_RANGE, f"The simulator does not expand {kind}.")
    boundary_kind = etree.QName(boundary).localname
    if boundary_kind == "NumberedRecurrence":
        options["count"] = int(boundary.findtext(t("NumberOfOccurrences")))
    elif boundary_kind == "EndDateRecurrence":
        end = dt.date.fromisoformat(boundary.findtext(t("EndDate"))[:10])
        options["until"] = dt.datetime.combine(end, dt.time(23, 59, 59))
    for number, when in enumerate(rrule.rrule(freq, **options), start=1):
        if number == index:
            return when.replace(tzinfo=tz).astimezone(dt.UTC)
        if number > index or number > 10_000:
            break
    raise ResponseError(OUT_OF_RANGE, f"The recurrence has no instance {index}.")


def resolve(context, elem: etree._Element) -> tuple[StoredMailbox, StoredItem, dt.datetime]:
    """(mailbox, master, original start) of an ``OccurrenceItemId``."""
    master_ref = etree.Element(t("ItemId"), Id=elem.get("RecurringMasterId") or "")
    mailbox, master = context.item(master_ref)
    try:
        index = int(elem.get("InstanceIndex") or "")
    except ValueError:
        raise SoapFault("ErrorSchemaValidation", "InstanceIndex must be a number.") from None
    return mailbox, master, instance_start(master, index)


def cancel(store, context, elem: etree._Element) -> None:
    """DeleteItem of one instance."""
    _, master, original = resolve(context, elem)
    cancel_occurrence(store, master.id, original)


def exception_for(store, context, elem: etree._Element) -> StoredItem:
    """The exception item of one instance, made (unchanged but for being an exception) if the
    instance has none yet; UpdateItem then changes it."""
    mailbox, master, original = resolve(context, elem)
    moved = _field(master, "ModifiedOccurrences")
    for entry in moved if moved is not None else []:
        if _utc(entry.findtext(t("OriginalStart"))) == original:
            return mailbox.items[entry.find(t("ItemId")).get("Id")]
    length = _utc(_field(master, "End").text) - _utc(_field(master, "Start").text)
    subject = _field(master, "Subject")
    exception_id = move_occurrence(store, master.id, original, original, original + length,
                                   subject.text if subject is not None else "")  # fmt: skip
    return mailbox.items[exception_id]


def refresh_master(store, exception: StoredItem) -> None:
    """After an exception changed: its times on the master's list, and the master changed (on
    Exchange the exceptions live inside the master)."""
    master = store.find_item(exception.occurrence_of)
    moved = _field(master, "ModifiedOccurrences")
    for entry in moved if moved is not None else []:
        if entry.find(t("ItemId")).get("Id") == exception.id:
            entry.find(t("ItemId")).set("ChangeKey", exception.changekey)
            for name in ("Start", "End"):
                entry.find(t(name)).text = _field(exception, name).text
    store.touch(master)
