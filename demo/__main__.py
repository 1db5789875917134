"""`python -m demo`: register the DreamBooth subjects as works on a running stack, attribute the
held-back photos, and print ranked works with the true subject marked.

Each subject's first photos become the work's images; every other photo is a query."""
import argparse
import os
import sys
import time
from pathlib import Path

import httpx

DATA = Path(__file__).parent / "data" / "dreambooth"
ADMIN_KEY_FILE = Path("var/run/admin.key")
RIGHTS_HOLDER = "DreamBooth authors"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    port = os.environ.get("ATTRIB_PORT", "8000")  # the port scripts/stack.sh started the API on
    parser.add_argument("--api", default=f"http://127.0.0.1:{port}")
    parser.add_argument("--register", type=int, default=2, help="photos per subject registered as the work")
    parser.add_argument("--show", type=int, default=12, help="queries printed in full")
    parser.add_argument("--admin-key", default=None, help=f"default: contents of {ADMIN_KEY_FILE}")
    return parser.parse_args(argv)


def subjects() -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(DATA.iterdir()) if d.is_dir()}


def register_all(api: httpx.Client, photos: dict[str, list[Path]], count: int) -> dict[str, str]:
    work_ids = {}
    for subject, paths in photos.items():
        files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in paths[:count]]
        response = api.post("/sources", files=files,
                            data={"title": subject.replace("_", " "),
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


def scoped_keys(api_url: str, admin_key: str) -> tuple[str, str]:
    """Least privilege: a registrar key for the rights holder's works, an attributor key for queries."""
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"}) as admin:
        def create(body):
            response = admin.post("/keys", json=body)
            response.raise_for_status()
            return response.json()["secret"]
        return (create({"name": "demo registrar", "scope": "registrar", "rights_holder": RIGHTS_HOLDER}),
                create({"name": "demo attributor", "scope": "attributor"}))


def client(api_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def main(argv=None) -> None:
    args = parse_args(argv)
    photos = subjects()
    registrar_key, attributor_key = scoped_keys(args.api, args.admin_key or ADMIN_KEY_FILE.read_text().strip())
    with client(args.api, registrar_key) as registrar:
        work_ids = register_all(registrar, photos, args.register)
        wait_searchable(registrar, work_ids)
    with client(args.api, attributor_key) as api:
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
