"""Content-addressed storage: blobs named by their sha256, and trees (folders) as manifests of blobs."""

from mllib.store.blobs import Blob, BlobStore, LocalBlobStore
from mllib.store.trees import FileEntry, Tree, materialize_tree, put_files, put_tree, read_tree

__all__ = [
    "Blob",
    "BlobStore",
    "FileEntry",
    "LocalBlobStore",
    "Tree",
    "materialize_tree",
    "put_files",
    "put_tree",
    "read_tree",
]
