"""Document-level warnings of an opened PDF: JavaScript, form fields, permission restrictions.

Nothing here executes or evaluates anything found in the file: JavaScript is only *detected* (by
looking for ``/S /JavaScript`` actions and a ``/Names /JavaScript`` tree) and reported as a warning.
"""

from __future__ import annotations

import re

import pymupdf

_JS_MARK = re.compile(rb"/S\s*/JavaScript|/JS\b")
_REF = re.compile(r"(\d+)\s+0\s+R")


def document_warnings(doc: pymupdf.Document) -> list[str]:
    """JavaScript, form fields and permission restrictions of an opened (authenticated) PDF."""
    warnings: list[str] = []
    js = _javascript_places(doc)
    if js:
        warnings.append(
            "contains JavaScript ("
            + ", ".join(js[:8])
            + (", ..." if len(js) > 8 else "")
            + "); it is never executed"
        )
    try:
        fields = doc.is_form_pdf
    except Exception:
        fields = False
    if fields:
        warnings.append(
            "interactive form (AcroForm): filled field values are appended to the page text "
            "under 'Form fields:'"
        )
    restricted = _restricted_permissions(doc)
    if restricted:
        warnings.append(
            "document permissions restrict "
            + ", ".join(restricted)
            + "; it is read for analysis only"
        )
    return warnings


_PERMISSIONS = (
    ("PDF_PERM_PRINT", "printing"),
    ("PDF_PERM_MODIFY", "modification"),
    ("PDF_PERM_COPY", "copying text"),
    ("PDF_PERM_ANNOTATE", "annotation"),
    ("PDF_PERM_FORM", "form filling"),
    ("PDF_PERM_ACCESSIBILITY", "accessibility extraction"),
    ("PDF_PERM_ASSEMBLE", "assembly"),
    ("PDF_PERM_PRINT_HQ", "high-quality printing"),
)


def _restricted_permissions(doc: pymupdf.Document) -> list[str]:
    try:
        if not (doc.metadata or {}).get("encryption"):
            return []
        perms = int(doc.permissions)
    except Exception:
        return []
    return [label for attr, label in _PERMISSIONS if not perms & int(getattr(pymupdf, attr))]


def _javascript_places(doc: pymupdf.Document) -> list[str]:
    """Where JavaScript actions sit: document names tree, open action, document/page/annotation
    additional actions. Only action dictionaries reachable from those keys are inspected."""
    places: list[str] = []
    try:
        catalog = doc.pdf_catalog()  # type: ignore[no-untyped-call]
    except Exception:
        return places
    if doc.xref_get_key(catalog, "Names/JavaScript")[0] != "null":  # type: ignore[no-untyped-call]
        places.append("document names tree")
    for key, label, depth in (("OpenAction", "open action", 1), ("AA", "document actions", 2)):
        if _key_has_js(doc, catalog, key, depth):
            places.append(label)
    for index in range(doc.page_count):
        try:
            page = doc.load_page(index)  # type: ignore[no-untyped-call]
            if _key_has_js(doc, page.xref, "AA", 2):
                places.append(f"page {index + 1} actions")
            for annot_xref, _type, _id in page.annot_xrefs():
                if _key_has_js(doc, annot_xref, "A", 1) or _key_has_js(doc, annot_xref, "AA", 2):
                    places.append(f"page {index + 1} annotation/field")
                    break
        except Exception:
            continue
    return places


def _key_has_js(doc: pymupdf.Document, xref: int, key: str, depth: int) -> bool:
    kind, value = doc.xref_get_key(xref, key)  # type: ignore[no-untyped-call]
    if kind == "null":
        return False
    if kind == "xref":
        return _object_has_js(doc, int(value.split()[0]), depth, set())
    return _text_has_js(doc, value, depth, set())


def _object_has_js(doc: pymupdf.Document, xref: int, depth: int, seen: set[int]) -> bool:
    if xref in seen or depth < 0 or not 0 < xref < doc.xref_length():  # type: ignore[no-untyped-call]
        return False
    seen.add(xref)
    try:
        text = doc.xref_object(xref, compressed=True)  # type: ignore[no-untyped-call]
    except Exception:
        return False
    return _text_has_js(doc, text, depth, seen)


def _text_has_js(doc: pymupdf.Document, text: str, depth: int, seen: set[int]) -> bool:
    if _JS_MARK.search(text.encode("latin-1", "replace")):
        return True
    if depth <= 0:
        return False
    return any(_object_has_js(doc, int(ref), depth - 1, seen) for ref in _REF.findall(text)[:32])
