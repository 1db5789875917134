"""attrib COMMAND [args]   (each command has --help)

client commands (HTTP; --url / ATTRIB_URL, --key / ATTRIB_KEY):
  import FOLDER|CSV        register a catalogue: one sub-folder or CSV row per work (resumable)
  attribute FILE...|DIR    attribute images; a table, or --json / --csv
  works                    list registered works
  jobs [JOB_ID...]         show attribution jobs
admin commands (run here, against ATTRIB_DATABASE_URL / ATTRIB_REDIS_URL / ATTRIB_DATA_DIR):
  keys {create,list,revoke}   API keys (= python -m common.apikeys)
  retrain [args]              train, evaluate, publish (= python -m training retrain)
  rollback                    back to the previous (encoder, index) pair
  status                      serving pair, works, jobs, deliveries, live workers
  consistency [--repair]      database vs saved index (= python -m worker.consistency)
  sweep [--days N]            delete finished jobs past retention now

Commands are imported only when they run: client commands never load torch."""
import importlib
import sys


def _delegate(module: str, prefix: tuple[str, ...] = ()):
    def run(argv: list[str]) -> int:
        result = importlib.import_module(module).main([*prefix, *argv])
        return result if isinstance(result, int) else 0
    return run


def _local(module: str):
    return lambda argv: importlib.import_module(module).main(argv)


COMMANDS = {
    "import": _local("cli.importer"),
    "attribute": _local("cli.attribute"),
    "works": _local("cli.listing"),
    "jobs": _local("cli.jobs"),
    "keys": _delegate("common.apikeys"),
    "retrain": _delegate("training.__main__", ("retrain",)),
    "rollback": _delegate("training.__main__", ("rollback",)),
    "status": _local("cli.status"),
    "consistency": _delegate("worker.consistency"),
    "sweep": _local("cli.sweep"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr if argv[:1] not in (["-h"], ["--help"]) else sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    # argparse in each command names itself "attrib <command>".
    sys.argv[0] = f"attrib {argv[0]}"
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
