"""CRM records API under ``/crm/<version>``: writes, reads, search and metadata, as one blueprint."""

from __future__ import annotations

from flask import Blueprint

from zohosim.crm import convert, delete, metadata, read, search, watch, write

bp = Blueprint("crm", __name__, url_prefix="/crm/<zver:version>")
# The order the routes were registered in before the split, so that the URL map is the same
# (deletes came later, last).
for part in (watch.bp, write.bp, read.bp, search.bp, metadata.bp, convert.bp, delete.bp):
    bp.register_blueprint(part)

__all__ = ["bp"]
