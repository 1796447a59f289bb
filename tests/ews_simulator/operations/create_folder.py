"""CreateFolder: new folders under a parent folder."""

from __future__ import annotations

from lxml import etree

from ..props import Shape
from ..render import render_folder
from ..soap import SoapFault, m, t
from .base import Operation

FOLDER_ELEMENTS = {"Folder": "IPF.Note", "CalendarFolder": "IPF.Appointment", "ContactsFolder": "IPF.Contact",
                   "TasksFolder": "IPF.Task", "SearchFolder": None}  # fmt: skip


class CreateFolder(Operation):
    NAME = "CreateFolder"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        parent_ref = self.child(request, "ParentFolderId")
        if len(parent_ref) != 1:
            raise SoapFault(
                "ErrorSchemaValidation", "The request failed schema validation: ParentFolderId."
            )
        new_folders = list(self.child(request, "Folders"))
        if not new_folders:
            raise SoapFault(
                "ErrorSchemaValidation", "The request failed schema validation: Folders is empty."
            )

        def build(spec: etree._Element, message: etree._Element) -> None:
            kind = etree.QName(spec).localname
            if kind not in FOLDER_ELEMENTS:
                raise SoapFault(
                    "ErrorSchemaValidation", f"The request failed schema validation: {kind}."
                )
            mailbox, parent = self.context.folder(parent_ref[0])
            folder_class = spec.findtext(t("FolderClass")) or FOLDER_ELEMENTS[kind]
            folder = self.store.create_folder(
                mailbox, parent, spec.findtext(t("DisplayName")) or "", folder_class
            )
            etree.SubElement(message, m("Folders")).append(
                render_folder(mailbox, folder, Shape(fields=set()))
            )

        return self.each(new_folders, build)
