"""Readers for evaluation sets: AbC's test-split JSON, and our folder format.

Folder format:
    ROOT/<concept>/exemplars/*              the concept's source images
    ROOT/<concept>/queries/<query_type>/*   synthetic queries (files directly in queries/ -> "default")
    ROOT/distractors/**/*                   images of no concept
AbC format: JSON {concept: {"exemplar": [paths], "synth": {prompt_type: [paths]}}}, paths relative to
an image root, plus a distractor list (text, one path a line, or a JSON list)."""
import json
from dataclasses import dataclass, field
from pathlib import Path

from training.data import IMAGE_SUFFIXES, list_images

DISTRACTOR_DIR = "distractors"


@dataclass
class EvalSet:
    name: str
    exemplars: dict[str, list[Path]]
    queries: dict[str, dict[str, list[Path]]]  # concept -> query type -> paths
    distractors: list[Path] = field(default_factory=list)

    def all_paths(self) -> list[Path]:
        paths = [p for ps in self.exemplars.values() for p in ps] + list(self.distractors)
        return paths + [p for by_type in self.queries.values() for ps in by_type.values() for p in ps]


def read_folder_set(root: str | Path) -> EvalSet:
    root = Path(root)
    exemplars, queries = {}, {}
    # A concept is a folder with exemplars; others (distractors/, the bench's unlabeled traffic/) are not.
    for concept_dir in sorted(d for d in root.iterdir() if (d / "exemplars").is_dir()):
        if not list_images(concept_dir / "exemplars"):
            continue  # no positives: its AP would be undefined (NaN) and poison the means
        exemplars[concept_dir.name] = list_images(concept_dir / "exemplars")
        queries[concept_dir.name] = _read_queries(concept_dir / "queries")
    distractor_dir = root / DISTRACTOR_DIR
    distractors = list_images(distractor_dir) if distractor_dir.is_dir() else []
    return EvalSet(root.name, exemplars, queries, distractors)


def _read_queries(directory: Path) -> dict[str, list[Path]]:
    if not directory.is_dir():
        return {}
    by_type = {d.name: list_images(d) for d in sorted(directory.iterdir()) if d.is_dir()}
    loose = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        by_type["default"] = loose
    return {t: ps for t, ps in by_type.items() if ps}


def read_abc_set(json_path: str | Path, image_root: str | Path | None = None,
                 distractor_list: str | Path | None = None) -> EvalSet:
    json_path = Path(json_path)
    root = Path(image_root) if image_root else json_path.parent
    split = json.loads(json_path.read_text())
    exemplars = {c: [root / p for p in entry["exemplar"]] for c, entry in split.items()}
    queries = {c: {t: [root / p for p in ps] for t, ps in entry["synth"].items()} for c, entry in split.items()}
    distractors = [root / p for p in read_path_list(distractor_list)] if distractor_list else []
    return EvalSet(json_path.stem, exemplars, queries, distractors)


def read_path_list(path: str | Path) -> list[str]:
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_eval_set(path: str | Path, image_root=None, distractor_list=None) -> EvalSet:
    """A directory is the folder format; a .json file is an AbC split."""
    path = Path(path)
    return read_folder_set(path) if path.is_dir() else read_abc_set(path, image_root, distractor_list)
