"""``python -m lmfn_cli`` runs the ``lmfn`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="lmfn")
