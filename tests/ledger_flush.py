"""pytest plugin: let Django's test flush empty the append-only ledger tables.

Transactional tests end with `flush`, which TRUNCATEs (PostgreSQL) or DELETEs
(SQLite) every table; the ledger's triggers rightly refuse that. Around the
flush only, the triggers are dropped and put back, and the reference data that
migrations created (purposes, default field mappings) is restored, as serialized_rollback would.
Role groups come back through post_migrate, which flush sends.
"""

from __future__ import annotations

from typing import Any


def _wrap(operations_class: Any) -> None:
    original = operations_class.execute_sql_flush
    if getattr(original, "_ledger_aware", False):
        return

    def execute_sql_flush(self: Any, sql_list: list[str]) -> None:
        from compliance import ledger_guard
        from compliance.models import Purpose
        from compliance.purposes import purposes_install
        from sync.mappings import field_mappings_install
        from sync.models import FieldMapping

        ledger_guard.drop(self.connection)
        try:
            original(self, sql_list)
        finally:
            ledger_guard.install(self.connection)
        purposes_install(Purpose)
        field_mappings_install(FieldMapping, Purpose)

    execute_sql_flush._ledger_aware = True  # type: ignore[attr-defined]
    operations_class.execute_sql_flush = execute_sql_flush


def pytest_configure(config: Any) -> None:
    # Neither the PostgreSQL nor the SQLite backend overrides this method.
    from django.db.backends.base.operations import BaseDatabaseOperations

    _wrap(BaseDatabaseOperations)
