"""The composition root: the `chatmesh` command, the `dev` composition and `serve`.

The only package that imports every service; services and chatmesh_common import none of it.
"""
