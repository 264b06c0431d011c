"""``python -m cnnbench`` (also what ``torchrun -m cnnbench`` runs)."""

from cnnbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
