"""The EWS operations the simulator implements, one handler class per operation."""

from .base import Operation, Principal, RequestContext
from .convert_id import ConvertId
from .create_folder import CreateFolder
from .create_item import CreateItem
from .delete_item import DeleteItem
from .find_folder import FindFolder
from .find_item import FindItem
from .get_attachment import GetAttachment
from .get_folder import GetFolder
from .get_item import GetItem
from .sync_folder_hierarchy import SyncFolderHierarchy
from .sync_folder_items import SyncFolderItems
from .update_item import UpdateItem

OPERATIONS: dict[str, type[Operation]] = {
    cls.NAME: cls
    for cls in (
        ConvertId,
        CreateFolder,
        CreateItem,
        DeleteItem,
        FindFolder,
        FindItem,
        GetAttachment,
        GetFolder,
        GetItem,
        SyncFolderHierarchy,
        SyncFolderItems,
        UpdateItem,
    )
}

__all__ = ["OPERATIONS", "Operation", "Principal", "RequestContext"]
