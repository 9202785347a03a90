"""`python -m chat_service`: one chat_service process, configured from the environment."""

from chatmesh_common.cli import main

if __name__ == "__main__":
    main(["serve", "chat"])
