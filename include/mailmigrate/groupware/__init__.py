"""Groupware migration: calendars, task lists and address books over CalDAV (RFC 4791) and
CardDAV (RFC 6352) or Exchange (EWS, :mod:`~mailmigrate.groupware.ews`), next to the mail.

Entry points (no Airflow here): :func:`~mailmigrate.groupware.sync.preflight` and
:func:`~mailmigrate.groupware.sync.copy_groupware`, on two endpoints
(:class:`~mailmigrate.groupware.dav.DavEndpoint` or
:class:`~mailmigrate.groupware.ews.EwsGroupwareEndpoint`, see
:mod:`~mailmigrate.groupware.side`). What Exchange can and cannot hold is in
:mod:`~mailmigrate.groupware.ews_convert`; an item it cannot hold is reported, never written
with less.

What "copied" means for groupware (the README says the same to operators):

- **Every item, by UID.** Each calendar resource (an event with all its overridden instances,
  or a task) and each vCard of a source collection is in the mapped destination collection under
  the same UID, once. Resource names (hrefs) may differ; UIDs may not.
- **Content equal after normalising only what servers legitimately rewrite**
  (:func:`~mailmigrate.groupware.content.canonical`): line folding and endings, the order of
  properties, components, parameters and recurrence-rule parts, the case of property and
  parameter names, ``PRODID``, ``DTSTAMP``, ``LAST-MODIFIED``, vCard ``REV``, the VTIMEZONE
  definitions (the TZID each time refers to is still compared), vCard ``TYPE`` spelling, and the
  RFC 6638 parameters ``SCHEDULE-AGENT``/``SCHEDULE-STATUS``/``SCHEDULE-FORCE-SEND``.
  Everything else is compared as written, so these survive or the item is reported:
  recurrence rules with EXDATE exceptions and overridden instances (RECURRENCE-ID), all-day
  dates, time zones, ORGANIZER and ATTENDEE with PARTSTAT replies, VALARM alarms, CATEGORIES,
  CLASS, inline (base64) attachments; tasks with STATUS, DUE, COMPLETED, PERCENT-COMPLETE and
  RELATED-TO (subtasks); contacts with PHOTO, several ADR/TEL/EMAIL, BDAY, and groups
  (vCard 4 ``KIND:group``/``MEMBER`` or Apple's ``X-ADDRESSBOOKSERVER-*``).
- **Collections** keep their display name and colour when the copy creates them; the source's
  default calendar goes into the destination's default calendar, the others by name (renamed
  ``"<name> (2)"`` on conflict, reported in the mapping).
- **Deltas** list changes through sync-collection (RFC 6578) where offered, else compare ETags;
  an item changed on the destination since the copy is kept and reported, never reverted;
  deletions on the source reach the destination only with ``propagate_deletions``. Re-runs,
  with or without the state, add nothing twice.
- **No one is emailed**: see :mod:`~mailmigrate.groupware.scheduling`.
- **Problems are per item** (:class:`~mailmigrate.groupware.sync.ItemProblem`: collection, UID,
  reason); a collection that fails costs that collection, never the account.
"""
