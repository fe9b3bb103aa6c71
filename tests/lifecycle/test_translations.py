"""The German catalogue: the compiled .mo that Django reads says what the .po says."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import compliance

LC_MESSAGES = Path(compliance.__file__).parent / "locale" / "de" / "LC_MESSAGES"


def po_entries() -> dict[str, str]:
    text = (LC_MESSAGES / "django.po").read_text()
    pairs = re.findall(r'^msgid ((?:".*"\n)+)msgstr ((?:".*"\n?)+)', text, re.M)
    join = lambda block: "".join(ast.literal_eval(line) for line in block.strip().splitlines())  # noqa: E731
    return {join(msgid): join(msgstr) for msgid, msgstr in pairs if join(msgid)}


def test_every_german_text_is_compiled_into_the_mo_file() -> None:
    with (LC_MESSAGES / "django.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    entries = po_entries()

    assert len(entries) > 50
    for msgid, msgstr in entries.items():
        assert msgstr, f"untranslated: {msgid!r}"
        assert compiled.gettext(msgid) == msgstr, f"django.mo is older than django.po (msgfmt it): {msgid!r}"
