"""`python -m chatmesh_launcher`: the `chatmesh` command."""

from chatmesh_launcher.cli import main

if __name__ == "__main__":
    main()
