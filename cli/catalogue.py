"""Reading a catalogue to import: one sub-folder per work (title = folder name, or `work.json` beside the
images), or a CSV with one row per work (`title`, `files` separated by `;` relative to the CSV, and
optional `item_id`, `external_ref`, `licence`, `rights_holder`). Nothing here talks to the server."""
import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"}
METADATA_FIELDS = ("external_ref", "licence", "rights_holder")


@dataclass
class Item:
    item_id: str
    title: str
    files: list[Path]
    metadata: dict[str, str] = field(default_factory=dict)  # external_ref, licence, rights_holder
    problem: str | None = None  # refused before sending (no images, a missing file, no title)

    def fingerprint(self) -> str:
        """Changes when the item's metadata or any image byte changes: the resume and idempotency key."""
        digest = hashlib.sha256(json.dumps([self.item_id, self.title, self.metadata], sort_keys=True).encode())
        for path in self.files:
            digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
        return digest.hexdigest()


def read_catalogue(source: Path, rights_holder: str | None = None) -> list[Item]:
    items = _from_csv(source) if source.is_file() else _from_folder(source)
    if rights_holder:
        for item in items:
            item.metadata.setdefault("rights_holder", rights_holder)
    return items


def _from_folder(root: Path) -> list[Item]:
    if not root.is_dir():
        raise SystemExit(f"{root}: no such folder or CSV file")
    return [_folder_item(d) for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]


def _folder_item(folder: Path) -> Item:
    meta_file = folder / "work.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    item = Item(item_id=folder.name, title=str(meta.get("title") or folder.name), files=files,
                metadata={k: str(meta[k]) for k in METADATA_FIELDS if meta.get(k)})
    item.problem = None if files else "no image files in the folder"
    return item


def _from_csv(path: Path) -> list[Item]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return [_csv_item(path.parent, number, row) for number, row in enumerate(rows, start=1)]


def _csv_item(base: Path, number: int, row: dict) -> Item:
    names = [n.strip() for n in (row.get("files") or "").split(";") if n.strip()]
    files = [base / n for n in names]
    item = Item(item_id=(row.get("item_id") or "").strip() or f"row-{number}", title=(row.get("title") or "").strip(),
                files=files, metadata={k: row[k].strip() for k in METADATA_FIELDS if (row.get(k) or "").strip()})
    missing = [str(p) for p in files if not p.is_file()]
    item.problem = ("no title" if not item.title else "no files" if not files
                    else f"missing files: {', '.join(missing)}" if missing else None)
    return item
