"""Switchable, seeded faults. Set them through ``/_sim/faults`` or ``state.set_fault(name, **params)``."""

from __future__ import annotations

import fnmatch
import random
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zohosim.state import Record, SimState

WRITE_OPS = ["crm.update", "crm.create", "crm.upsert"]
DEFAULT_OPS: dict[str, list[str]] = {
    "workflow_reset": WRITE_OPS,
    "field_no_permission": WRITE_OPS,
    "silent_noop": ["crm.update", "crm.upsert"],
    "stop_processing": ["crm.update", "crm.upsert"],
    "rate_limit": ["crm.*", "bulk.*"],
    "server_error": ["crm.*", "bulk.*"],
    "slow": ["crm.*", "bulk.*"],
    "expire_tokens": ["crm.*", "bulk.*", "campaigns.*"],
    "wrong_dc": ["*"],
}
FAULT_NAMES = (
    "workflow_reset",
    "field_no_permission",
    "silent_noop",
    "rate_limit",
    "server_error",
    "slow",
    "expire_tokens",
    "wrong_dc",
    "duplicate_email",
    "campaigns_lock",
    "stop_processing",
    "missing_scope",
)


class FaultError(ValueError):
    pass


class FaultSet:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.active: dict[str, Any] = {}
        self._rng_lock = threading.Lock()
        self.reseed(state.config.fault_seed)

    def reseed(self, seed: int | None) -> None:
        with self._rng_lock:
            self.rng = random.Random(seed)

    def roll(self, ratio: float | None) -> bool:
        if ratio is None or ratio >= 1:
            return True
        if ratio <= 0:
            return False
        with self._rng_lock:
            return self.rng.random() < ratio

    # ----- configuration

    def snapshot(self) -> dict[str, Any]:
        with self.state.lock:
            return {k: v for k, v in self.active.items()}

    def clear(self, name: str | None = None) -> None:
        with self.state.lock:
            if name is None:
                self.active.clear()
                self.state.pending_resets.clear()
            else:
                self.active.pop(name, None)
                if name == "workflow_reset":
                    self.state.pending_resets.clear()

    def set(self, name: str, params: Any) -> dict[str, Any]:
        """Switch a fault on. Returns what was stored (or, for one-shot faults, what was done)."""
        if name not in FAULT_NAMES:
            raise FaultError(f"unknown fault {name!r}; one of {', '.join(FAULT_NAMES)}")
        rules = params if isinstance(params, list) else [params or {}]
        if not all(isinstance(r, dict) for r in rules):
            raise FaultError("fault parameters must be an object or a list of objects")
        with self.state.lock:
            now = self.state.now()
            if name == "duplicate_email":
                return {"duplicate_email": [self._make_duplicate(r) for r in rules]}
            if name == "campaigns_lock":
                return {"campaigns_lock": [self._force_campaigns_lock(r, now) for r in rules]}
            if name == "expire_tokens" and all("ratio" not in r for r in rules):
                return {"expire_tokens": {"expired": self.state.expire_tokens()}}
            for rule in rules:
                self._validate(name, rule)
                if "for_s" in rule:
                    rule["until"] = now + float(rule["for_s"])
            stored: Any = rules if isinstance(params, list) else rules[0]
            self.active[name] = stored
            return {name: stored}

    def _validate(self, name: str, rule: dict[str, Any]) -> None:
        if name == "workflow_reset":
            if "field" not in rule or "value" not in rule:
                raise FaultError("workflow_reset needs field and value")
            rule.setdefault("delay_s", 0)
        elif name == "field_no_permission":
            if "field" not in rule and "fields" not in rule:
                raise FaultError("field_no_permission needs field (or fields)")
            if rule.setdefault("mode", "error") not in ("error", "silent"):
                raise FaultError("field_no_permission mode is error or silent")
        elif name == "missing_scope":
            if "scope" not in rule and "scopes" not in rule:
                raise FaultError("missing_scope needs scope (or scopes)")
        elif name == "slow":
            rule.setdefault("delay_s", 1.0)
        if "ratio" in rule and not 0 <= float(rule["ratio"]) <= 1:
            raise FaultError("ratio must be between 0 and 1")
        if "nth" in rule:
            nth = rule["nth"]
            if not isinstance(nth, list) or not all(isinstance(n, int) and n >= 1 for n in nth):
                raise FaultError("nth must be a list of call numbers, 1 for the first")

    def rules(self, name: str, op: str | None = None) -> list[dict[str, Any]]:
        value = self.active.get(name)
        if value is None:
            return []
        rules = value if isinstance(value, list) else [value]
        now = self.state.now()
        out = []
        for rule in rules:
            if op is not None and not self._op_matches(name, rule, op):
                continue
            if "until" in rule and now >= float(rule["until"]):
                continue
            if "from" in rule and now < float(rule["from"]):
                continue
            out.append(rule)
        return out

    def _op_matches(self, name: str, rule: dict[str, Any], op: str) -> bool:
        patterns = rule.get("ops") or ([rule["op"]] if "op" in rule else DEFAULT_OPS.get(name, ["*"]))
        return any(fnmatch.fnmatchcase(op, p) for p in patterns)

    # ----- queries used by the endpoints

    def pick(self, name: str, op: str) -> dict[str, Any] | None:
        """The first matching rule of ``name`` whose ratio roll succeeds, or None."""
        for rule in self.rules(name, op):
            if "nth" in rule:
                # The rule's own count of the calls it matched: it fires on those it names.
                with self._rng_lock:
                    rule["seen"] = int(rule.get("seen", 0)) + 1
                    if rule["seen"] in rule["nth"]:
                        return rule
                continue
            if self.roll(rule.get("ratio")):
                return rule
        return None

    def no_permission(self, op: str) -> dict[str, str]:
        """Field (or nested path) -> mode ("error"|"silent") for the API user."""
        out: dict[str, str] = {}
        for rule in self.rules("field_no_permission", op):
            for f in rule.get("fields") or [rule["field"]]:
                out[f] = rule.get("mode", "error")
        return out

    def restricted_fields(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for rule in self.rules("field_no_permission"):
            for f in rule.get("fields") or [rule["field"]]:
                out[f] = rule.get("mode", "error")
        return out

    def silent_noop(self, op: str, record_id: str) -> bool:
        for rule in self.rules("silent_noop", op):
            ids = rule.get("record_ids")
            if ids is not None and record_id not in [str(i) for i in ids]:
                continue
            if self.roll(rule.get("ratio")):
                return True
        return False

    def stop_processing(self, op: str, record_id: str) -> bool:
        """Whether the record is in "stop processing" (GDPR): Zoho refuses writes with CANNOT_PROCESS."""
        for rule in self.rules("stop_processing", op):
            ids = rule.get("record_ids")
            if ids is None or record_id in [str(i) for i in ids]:
                return True
        return False

    def missing_scopes(self) -> frozenset[str]:
        """Scopes the token lacks (``missing_scope`` fault: ``{"scope": "ZohoCRM.coql.READ"}``)."""
        out: list[str] = []
        for rule in self.rules("missing_scope"):
            out.extend(rule.get("scopes") or [rule.get("scope", "")])
        return frozenset(s for s in out if s)

    def schedule_workflow_resets(
        self, module: str, record: Record, changes: dict[str, Any], now: float
    ) -> None:
        for rule in self.rules("workflow_reset", "crm.update"):
            path: str = rule["field"]
            head, _, rest = path.partition(".")
            if head not in changes:
                continue
            written = changes[head]
            if rest:
                if not isinstance(written, dict) or rest not in written:
                    continue
                written = written[rest]
            if written == rule["value"]:
                continue
            if "when_value" in rule and written != rule["when_value"]:
                continue
            if rule.get("record_ids") is not None and str(record.id) not in [
                str(i) for i in rule["record_ids"]
            ]:
                continue
            if not self.roll(rule.get("ratio")):
                continue
            self.state.pending_resets.append(
                {
                    "module": module,
                    "record_id": record.id,
                    "field": path,
                    "value": rule["value"],
                    "due": now + float(rule.get("delay_s", 0)),
                }
            )

    # ----- one-shot helpers

    def _make_duplicate(self, rule: dict[str, Any]) -> dict[str, Any]:
        state = self.state
        module = rule.get("module", "Contacts")
        store = state.modules[module]
        source = None
        if "record_id" in rule:
            source = state.find(module, rule["record_id"])
        elif "email" in rule:
            found = store.by_email(rule["email"])
            source = found[0] if found else None
        elif store.ids:
            source = store.records[store.ids[0]]
        email = rule.get("email") or (source.Email if source else None)
        if not email:
            raise FaultError("duplicate_email needs an email or an existing record")
        new_id = state.add_record(
            module,
            Email=email,
            First_Name=source.First_Name if source else "Dup",
            Last_Name=(source.Last_Name if source else "Licate") or "Licate",
        )
        return {"email": email, "original_id": str(source.id) if source else None, "duplicate_id": new_id}

    def _force_campaigns_lock(self, rule: dict[str, Any], now: float) -> dict[str, Any]:
        from zohosim.campaigns import LOCKED_METHODS

        methods = rule.get("methods") or ([rule["method"]] if "method" in rule else list(LOCKED_METHODS))
        until = now + float(rule.get("for_s", self.state.config.campaigns_lock_s))
        for m in methods:
            self.state.campaign_locks[m] = until
        return {"methods": methods, "until": until}
