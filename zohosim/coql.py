"""COQL: a small real parser for the subset Zoho documents, executed over the sorted id index."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, g, request

from zohosim.errors import ZohoError
from zohosim.fields import parse_time
from zohosim.guard import crm_api, rows_response, sim_state
from zohosim.quota import coql_credits
from zohosim.state import MODULES, Record, SimState

bp = Blueprint("coql", __name__, url_prefix="/crm/<zver:version>")

MAX_LIMIT = 2000
MAX_TOTAL = 100_000
DEFAULT_LIMIT = 200
MAX_SELECT = 50
MAX_WHERE = 25
MAX_IN = 50

KEYWORDS = {
    "select", "from", "where", "and", "or", "order", "by", "asc", "desc", "limit", "offset",
    "in", "not", "is", "null", "like", "between", "true", "false",
}  # fmt: skip
TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
      |(?P<string>'(?:[^'\\]|\\.|'')*')
      |(?P<number>-?\d+(?:\.\d+)?)
      |(?P<op>>=|<=|!=|<>|=|>|<)
      |(?P<punct>[(),*])
      |(?P<ident>[A-Za-z_$][A-Za-z0-9_$.]*)""",
    re.VERBOSE,
)


class CoqlSyntaxError(Exception):
    def __init__(self, line: int, column: int, near: str) -> None:
        super().__init__(f"syntax error at {line}:{column} near {near!r}")
        self.line, self.column, self.near = line, column, near


class CoqlQueryError(Exception):
    def __init__(self, details: dict[str, Any], message: str = "invalid query formed") -> None:
        super().__init__(message)
        self.details = details
        self.message = message


@dataclass
class Token:
    kind: str  # ident, kw, string, number, op, punct, end
    text: str
    value: Any
    pos: int


@dataclass
class Cond:
    field: str
    op: str  # = != > < >= <= in not_in is_null is_not_null like not_like between
    value: Any = None


@dataclass
class BoolExpr:
    op: str  # and | or
    parts: list[Any] = field(default_factory=list)


@dataclass
class Query:
    fields: list[str]
    module: str
    where: Any = None
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, ascending)
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if m is None:
            raise _syntax(text, pos, text[pos : pos + 10])
        kind = m.lastgroup or ""
        raw = m.group()
        if kind != "ws":
            value: Any = raw
            if kind == "string":
                value = raw[1:-1].replace("''", "'").replace("\\'", "'")
            elif kind == "number":
                value = float(raw) if "." in raw else int(raw)
            elif kind == "ident" and raw.lower() in KEYWORDS:
                kind = "kw"
                value = raw.lower()
            tokens.append(Token(kind, raw, value, pos))
        pos = m.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


def _syntax(text: str, pos: int, near: str) -> CoqlSyntaxError:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return CoqlSyntaxError(line, column, near or "<EOF>")


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self) -> CoqlSyntaxError:
        return _syntax(self.text, self.tok.pos, self.tok.text)

    def take(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def kw(self, *words: str) -> bool:
        return self.tok.kind == "kw" and self.tok.value in words

    def expect_kw(self, word: str) -> None:
        if not self.kw(word):
            raise self.fail()
        self.i += 1

    def expect_punct(self, char: str) -> None:
        if self.tok.kind != "punct" or self.tok.text != char:
            raise self.fail()
        self.i += 1

    def ident(self) -> str:
        if self.tok.kind != "ident":
            raise self.fail()
        return str(self.take().text)

    def integer(self) -> int:
        if self.tok.kind != "number" or not isinstance(self.tok.value, int) or self.tok.value < 0:
            raise self.fail()
        return int(self.take().value)

    def parse(self) -> Query:
        self.expect_kw("select")
        fields = [self.ident()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.i += 1
            fields.append(self.ident())
        self.expect_kw("from")
        module = self.ident()
        query = Query(fields, module)
        if self.kw("where"):
            self.i += 1
            query.where = self.or_expr()
        if self.kw("order"):
            self.i += 1
            self.expect_kw("by")
            while True:
                name = self.ident()
                asc = True
                if self.kw("asc", "desc"):
                    asc = self.take().value == "asc"
                query.order.append((name, asc))
                if self.tok.kind == "punct" and self.tok.text == ",":
                    self.i += 1
                    continue
                break
        if self.kw("limit"):
            self.i += 1
            first = self.integer()
            if self.tok.kind == "punct" and self.tok.text == ",":
                self.i += 1
                query.offset, query.limit = first, self.integer()
            else:
                query.limit = first
                if self.kw("offset"):
                    self.i += 1
                    query.offset = self.integer()
        if self.tok.kind != "end":
            raise self.fail()
        return query

    def or_expr(self) -> Any:
        parts = [self.and_expr()]
        while self.kw("or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolExpr("or", parts)

    def and_expr(self) -> Any:
        parts = [self.atom()]
        while self.kw("and"):
            self.i += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else BoolExpr("and", parts)

    def atom(self) -> Any:
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.i += 1
            expr = self.or_expr()
            self.expect_punct(")")
            return expr
        name = self.ident()
        if self.tok.kind == "op":
            op = self.take().text
            return Cond(name, "!=" if op == "<>" else op, self.literal())
        if self.kw("is"):
            self.i += 1
            negate = self.kw("not")
            if negate:
                self.i += 1
            self.expect_kw("null")
            return Cond(name, "is_not_null" if negate else "is_null")
        negate = self.kw("not")
        if negate:
            self.i += 1
        if self.kw("in"):
            self.i += 1
            self.expect_punct("(")
            values = [self.literal()]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.i += 1
                values.append(self.literal())
            self.expect_punct(")")
            return Cond(name, "not_in" if negate else "in", values)
        if self.kw("like"):
            self.i += 1
            return Cond(name, "not_like" if negate else "like", self.literal())
        if self.kw("between") and not negate:
            self.i += 1
            low = self.literal()
            self.expect_kw("and")
            return Cond(name, "between", (low, self.literal()))
        raise self.fail()

    def literal(self) -> Any:
        tok = self.tok
        if tok.kind in ("string", "number"):
            self.i += 1
            return tok.value
        if tok.kind == "kw" and tok.value in ("true", "false", "null"):
            self.i += 1
            return {"true": True, "false": False, "null": None}[tok.value]
        raise self.fail()


def parse(text: str) -> Query:
    return Parser(text).parse()


# ----- execution


def _count_conditions(expr: Any) -> int:
    if isinstance(expr, BoolExpr):
        return sum(_count_conditions(p) for p in expr.parts)
    return 0 if expr is None else 1


def _field_kind(state: SimState, name: str) -> str:
    head, _, rest = name.partition(".")
    if head == "id":
        return "id"
    fdef = state.fields.get(head)
    if fdef is None:
        raise CoqlQueryError({"column_name": name, "reason": "column given seems to be invalid"})
    if head in ("Modified_Time", "Created_Time"):
        return "time"
    if head in ("Modified_By", "Created_By"):
        return "user"
    if rest:
        return "nested"
    return "bool" if fdef.data_type == "boolean" else "str"


def _record_value(record: Record, name: str, kind: str) -> Any:
    if kind == "id":
        return record.id
    if kind == "time":
        return int(record.modified if name == "Modified_Time" else record.created)
    if kind == "user":
        return int(record.modified_by if name.startswith("Modified_By") else record.created_by)
    value = record.get_path(name)
    return value.lower() if isinstance(value, str) else value


def _literal_for(kind: str, value: Any, name: str) -> Any:
    try:
        if value is None:
            return None
        if kind in ("id", "user"):
            return int(value)
        if kind == "time":
            return parse_time(str(value))
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false"):
                return str(value).lower() == "true"
            raise ValueError(value)
        return value.lower() if isinstance(value, str) else value
    except (TypeError, ValueError) as exc:
        raise CoqlQueryError({"column_name": name, "reason": "invalid value given for the column"}) from exc


def _compile(state: SimState, expr: Any) -> Any:
    """Turn conditions into closures over a Record."""
    if isinstance(expr, BoolExpr):
        parts = [_compile(state, p) for p in expr.parts]
        if expr.op == "and":
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)
    cond: Cond = expr
    kind = _field_kind(state, cond.field)
    name = cond.field
    op = cond.op
    if op in ("in", "not_in"):
        if len(cond.value) > MAX_IN:
            raise CoqlQueryError({"limit": MAX_IN, "reason": "in clause limit exceeded"}, "limit exceeded")
        values = {_literal_for(kind, v, name) for v in cond.value}
        if op == "in":
            return lambda r: _record_value(r, name, kind) in values
        return lambda r: _record_value(r, name, kind) not in values
    if op == "is_null":
        return lambda r: _record_value(r, name, kind) in (None, "")
    if op == "is_not_null":
        return lambda r: _record_value(r, name, kind) not in (None, "")
    if op in ("like", "not_like"):
        pattern = re.compile(
            "^" + ".*".join(re.escape(part) for part in str(cond.value).lower().split("%")) + "$", re.DOTALL
        )
        if op == "like":
            return lambda r: bool(pattern.match(str(_record_value(r, name, kind) or "")))
        return lambda r: not pattern.match(str(_record_value(r, name, kind) or ""))
    if op == "between":
        low, high = (_literal_for(kind, v, name) for v in cond.value)
        return lambda r: (
            _cmp(_record_value(r, name, kind), ">=", low) and _cmp(_record_value(r, name, kind), "<=", high)
        )
    lit = _literal_for(kind, cond.value, name)
    return lambda r: _cmp(_record_value(r, name, kind), op, lit)


def _cmp(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == ">":
            return bool(left > right)
        if op == "<":
            return bool(left < right)
        if op == ">=":
            return bool(left >= right)
        if op == "<=":
            return bool(left <= right)
    except TypeError:
        return False
    return False


def _id_lower_bound(expr: Any) -> tuple[int, bool] | None:
    """If the where clause is (or ANDs in) ``id > N`` / ``id >= N``, the bound for a bisect start."""
    conds = expr.parts if isinstance(expr, BoolExpr) and expr.op == "and" else [expr]
    best: tuple[int, bool] | None = None
    for c in conds:
        if isinstance(c, Cond) and c.field == "id" and c.op in (">", ">="):
            try:
                bound = (int(c.value), c.op == ">")
            except (TypeError, ValueError):
                continue
            if best is None or bound[0] > best[0]:
                best = bound
    return best


def _email_equals(expr: Any) -> str | None:
    conds = expr.parts if isinstance(expr, BoolExpr) and expr.op == "and" else [expr]
    for c in conds:
        if isinstance(c, Cond) and c.field == "Email" and c.op == "=" and isinstance(c.value, str):
            return c.value
    return None


def _sort_key(name: str, kind: str) -> Any:
    numeric = kind in ("id", "time", "bool", "user")

    def key(record: Record) -> tuple[bool, Any]:
        value = _record_value(record, name, kind)
        return (value is None, (value or 0) if numeric else str(value or ""))

    return key


def execute(state: SimState, query: Query) -> tuple[list[dict[str, Any]], bool]:
    if query.module not in MODULES:
        raise CoqlQueryError({"reason": "the relation name given seems to be invalid"})
    if len(query.fields) > MAX_SELECT:
        raise CoqlQueryError(
            {"limit": MAX_SELECT, "reason": "select column limit exceeded"}, "limit exceeded"
        )
    if _count_conditions(query.where) > MAX_WHERE:
        raise CoqlQueryError({"limit": MAX_WHERE, "reason": "where clause limit exceeded"}, "limit exceeded")
    for name in query.fields:
        _field_kind(state, name)
    predicate = _compile(state, query.where) if query.where is not None else None
    order = query.order or [("id", True)]
    kinds = [(name, _field_kind(state, name), asc) for name, asc in order]
    need = query.offset + query.limit + 1
    store = state.modules[query.module]
    by_id_asc = len(kinds) == 1 and kinds[0][0] == "id" and kinds[0][2]
    with state.lock:
        email = _email_equals(query.where) if query.where is not None else None
        if email is not None:
            candidates: Any = iter(store.by_email(email))
        else:
            ids = store.ids
            start = 0
            bound = _id_lower_bound(query.where) if query.where is not None else None
            if bound is not None and by_id_asc:
                start = (bisect.bisect_right if bound[1] else bisect.bisect_left)(ids, bound[0])
                if isinstance(query.where, Cond):
                    predicate = None  # the bound is the whole where clause, and the bisect applied it
            if predicate is None and by_id_asc:
                candidates = [store.records[i] for i in ids[start : start + need]]
            else:
                candidates = (store.records[ids[i]] for i in range(start, len(ids)))
        matched: list[Record] = []
        if predicate is None and by_id_asc and email is None:
            matched = list(candidates)
        else:
            for record in candidates:
                if predicate is None or predicate(record):
                    matched.append(record)
                    if by_id_asc and email is None and len(matched) >= need:
                        break
        if not by_id_asc or email is not None:
            for name, kind, asc in reversed(kinds):
                matched.sort(key=_sort_key(name, kind), reverse=not asc)
        page = matched[query.offset : query.offset + query.limit]
        more = len(matched) > query.offset + query.limit
        render = state.renderer(query.fields, user_last_name=True)
        rows = [render(r) for r in page]
    return rows, more


@bp.post("/coql")
@crm_api("crm.coql", heavy=True)
def coql(version: str) -> Response:
    state = sim_state()
    body = request.get_json(force=True, silent=True)
    text = body.get("select_query") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ZohoError(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            {"api_name": "select_query", "json_path": "$.select_query"},
        )
    try:
        query = parse(text)
    except CoqlSyntaxError as exc:
        raise ZohoError(
            "SYNTAX_ERROR",
            "error occurred while parsing the query",
            {"line": exc.line, "column": exc.column, "near": exc.near},
        ) from None
    if query.limit > MAX_LIMIT or query.limit < 1:
        raise ZohoError("LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_LIMIT, "by": query.limit})
    if query.offset + query.limit > MAX_TOTAL:
        raise ZohoError(
            "LIMIT_EXCEEDED",
            "offset and limit exceed the maximum number of records that can be fetched",
            {"limit": MAX_TOTAL, "by": query.offset + query.limit},
        )
    if state.config.coql_credits_by_limit:
        g.cost = coql_credits(query.limit)
    try:
        rows, more = execute(state, query)
    except CoqlQueryError as exc:
        code = "LIMIT_EXCEEDED" if exc.message == "limit exceeded" else "INVALID_QUERY"
        raise ZohoError(code, exc.message, exc.details) from None
    return rows_response(rows, {"count": len(rows), "more_records": more})
