"""python -m training {train,export,evaluate,calibrate,rebuild-index,publish,rollback,retrain,retrain-verdicts} [args]

Each command is a module with a `main(argv)`; modules are imported only when their command runs,
so `--help` is fast and a missing optional module breaks only its own command."""
import importlib
import sys

COMMANDS = {
    "train": "training.train",
    "export": "training.export",
    "evaluate": "training.evaluate",
    "calibrate": "training.calibrate",
    "rebuild-index": "training.rebuild_index",
    "publish": "training.publish",
    "rollback": "training.publish",
    "retrain": "training.retrain",
    "retrain-verdicts": "training.retrain_verdicts",
}


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[command])
    # publish.py serves two commands; it exposes `rollback_main` for the second when it has one.
    entry = getattr(module, "rollback_main", None) if command == "rollback" else None
    return (entry or module.main)(rest)


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
