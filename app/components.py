"""The page's library components: Gradio's Video, Image and Gallery taking app.media URLs as they are.

Plain gr.Video and gr.Image download a URL they are given into Gradio's cache (the server fetching
its own files), and plain gr.Gallery starts a thread pool on every call to look at each item; these
hand the URL to the browser, which fetches it from the app's /media route.
"""

from __future__ import annotations

from abc import ABCMeta
from typing import Any

import gradio as gr
from gradio.components.gallery import GalleryData, GalleryImage
from gradio.data_classes import FileData, ImageData

from app.media import ROUTE, media_type

__all__ = ["LibraryVideo", "LibraryImage", "LibraryGallery"]


def _media_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and f"{ROUTE}/" in value


def _media_file(value: str, kind=FileData):
    """An app.media URL as Gradio's file data: the browser fetches it, Gradio neither copies nor checks it."""
    name = value.rsplit("/", 1)[-1]
    return kind(path=value, url=value, orig_name=name, mime_type=media_type(name))


class _NoStub(type(gr.Video)):
    """Gradio's component metaclass writes a .pyi stub beside the module of every component class it
    makes; these subclasses add no events, so they are made as plain classes (the checkout stays clean)."""

    def __new__(mcs, name, bases, attrs):
        return ABCMeta.__new__(mcs, name, bases, attrs)


class LibraryVideo(gr.Video, metaclass=_NoStub):
    """gr.Video that shows an app.media URL as it is (plain gr.Video downloads a URL into its cache)."""

    is_template = True  # the frontend renders it with its Video component

    def postprocess(self, value: Any):
        return _media_file(value) if _media_url(value) else super().postprocess(value)


class LibraryImage(gr.Image, metaclass=_NoStub):
    """gr.Image that shows an app.media URL as it is."""

    is_template = True

    def postprocess(self, value: Any):
        return _media_file(value, ImageData) if _media_url(value) else super().postprocess(value)


class LibraryGallery(gr.Gallery, metaclass=_NoStub):
    """gr.Gallery that takes (app.media URL, caption) items as they are, without the thread pool
    plain gr.Gallery starts on every call to look at each item."""

    is_template = True

    def postprocess(self, value: Any):
        if isinstance(value, list) and value and all(isinstance(v, tuple) and _media_url(v[0]) for v in value):
            return GalleryData(root=[GalleryImage(image=_media_file(url, ImageData), caption=caption)
                                     for url, caption in value])
        return super().postprocess(value)
