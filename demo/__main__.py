"""`python -m demo`: register the DreamBooth subjects as works on a running stack, attribute the
held-back photos, and print ranked works with the true subject marked.

Each subject's first photos become the work's images; every other photo is a query."""
import argparse
import sys
import time
from pathlib import Path

import httpx

DATA = Path(__file__).parent / "data" / "dreambooth"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--register", type=int, default=2, help="photos per subject registered as the work")
    parser.add_argument("--show", type=int, default=12, help="queries printed in full")
    return parser.parse_args(argv)


def subjects() -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(DATA.iterdir()) if d.is_dir()}


def register_all(api: httpx.Client, photos: dict[str, list[Path]], count: int) -> dict[str, str]:
    work_ids = {}
    for subject, paths in photos.items():
        files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in paths[:count]]
        response = api.post("/sources", files=files,
                            data={"title": subject.replace("_", " "), "rights_holder": "DreamBooth authors",
                                  "licence": "CC-BY-4.0 / Unsplash", "external_ref": f"dreambooth/{subject}"})
        response.raise_for_status()
        work_ids[subject] = response.json()["id"]
    print(f"registered {len(work_ids)} works ({count} photos each)")
    return work_ids


def wait_searchable(api: httpx.Client, work_ids: dict[str, str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    pending = set(work_ids.values())
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"{len(pending)} works still not searchable after {timeout:.0f}s; see var/run/worker.log")
        pending = {w for w in pending if not api.get(f"/sources/{w}").json()["searchable"]}
        time.sleep(0.3)
    print("all works embedded and searchable")


def attribute(api: httpx.Client, path: Path) -> dict:
    response = api.post("/attribute", params={"wait": 30, "top_k": 5},
                        files={"image": (path.name, path.read_bytes(), "image/jpeg")})
    response.raise_for_status()
    return response.json()


def print_result(subject: str, path: Path, result: dict) -> None:
    print(f"\nquery {subject}/{path.name}")
    for match in result["matches"][:3]:
        mark = "✓" if match["title"] == subject.replace("_", " ") else " "
        print(f"  {mark} {match['rank']}. {match['title']:<22} score {match['score']:.3f}  share {match['share']:6.1%}")


def main(argv=None) -> None:
    args = parse_args(argv)
    photos = subjects()
    with httpx.Client(base_url=args.api, timeout=60) as api:
        work_ids = register_all(api, photos, args.register)
        wait_searchable(api, work_ids)
        queries = [(s, p) for s, paths in photos.items() for p in paths[args.register:]]
        ranks, shown = [], 0
        for i, (subject, path) in enumerate(queries):
            result = attribute(api, path)
            titles = [m["title"] for m in result["matches"]]
            truth = subject.replace("_", " ")
            ranks.append(titles.index(truth) + 1 if truth in titles else None)
            if i % max(1, len(queries) // args.show) == 0 and shown < args.show:
                print_result(subject, path, result)
                shown += 1
    top1 = sum(r == 1 for r in ranks)
    top5 = sum(r is not None for r in ranks)
    print(f"\n{len(ranks)} held-back photos: own subject ranked 1st for {top1} ({top1 / len(ranks):.1%}), "
          f"in the top 5 for {top5} ({top5 / len(ranks):.1%})")
    print(f"encoder: {result['encoder_id']}")


if __name__ == "__main__":
    main(sys.argv[1:])
