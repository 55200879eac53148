"""The dataset card (README.md) of a library published on the Hub by ``python -m precompute.push``.

Written only from the (already path-free) manifest and a few counts, so the card can never say more
about the machine that built the library than the uploaded manifest does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CardFacts", "dataset_card"]

#: Settings that describe the machine or one run rather than the library: left out of the card.
_RUN_ONLY = ("video_dir", "reuse_from", "progress_bar", "overwrite", "retry_failed")


@dataclass
class CardFacts:
    """What the card says beyond the manifest: the repo, what was uploaded, and the source's terms."""

    repo_id: str
    videos_uploaded: int = 0
    """Video files included in the repo (0 without --with-videos)."""
    license: str | None = None
    """A Hub licence id (e.g. cc-by-4.0) for the card's metadata; None when not given."""
    attribution: str | None = None
    """Free text: who made the source videos and how to credit them."""


def _row(name: str, value: Any) -> str:
    text = "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
    return f"| {name} | {text} |"


def _front_matter(facts: CardFacts) -> str:
    lines = ["---"]
    if facts.license:
        lines.append(f"license: {facts.license}")
    lines += ["pretty_name: " + facts.repo_id.split("/")[-1],
              "tags:", "- promptswitch", "- video-retrieval", "- text-to-video-retrieval", "- embeddings", "- faiss",
              "viewer: false", "---", ""]
    return "\n".join(lines)


def _index_rows(index: dict[str, Any]) -> list[str]:
    kind = index.get("type", "Flat")
    queries = int(index.get("recall_queries") or 0)
    recall = index.get("recall_at_10")
    if queries:
        measured = f"{float(recall):.3f} over {queries} held-in queries (against exact search)"
    else:
        measured = "1.0 (exact search: nothing to measure)" if kind == "Flat" else "not measured"
    return [_row("index type", f"`{kind}`"), _row("faiss factory", f"`{index.get('factory', kind)}`"),
            _row("parameters", index.get("params") or "none"), _row("metric", index.get("metric", "inner_product")),
            _row("recall@10", measured)]


def _source_section(manifest: dict[str, Any], facts: CardFacts) -> list[str]:
    out = ["## Source and licence", "",
           _row("source", f"`{manifest.get('source') or 'unknown'}` ({manifest.get('source_kind') or 'unknown kind'})"),
           _row("licence", facts.license or "not stated"), _row("attribution", facts.attribution or "not stated"), ""]
    if not facts.license and not facts.attribution:
        out.append("The licence of the source videos was not given when this library was published: check it "
                   "before reusing the thumbnails, posters or videos.")
        out.append("")
    return out


def dataset_card(manifest: dict[str, Any], facts: CardFacts) -> str:
    """Markdown with YAML front matter: model, counts, index and recall, build settings, source terms."""
    repo = facts.repo_id
    settings = {k: v for k, v in (manifest.get("settings") or {}).items() if k not in _RUN_ONLY}
    thumbs = manifest.get("thumbnails") or {}
    lines = [_front_matter(facts), f"# {repo}", "",
             "A precomputed text-to-video search library made with "
             "promptswitch (`python -m precompute`): one embedding per video from a Prompt Switch video encoder "
             "([arXiv 2308.07648](https://arxiv.org/abs/2308.07648); frames of a video exchange learned prompt "
             "tokens, so "
             "the embedding does not depend on the query), a faiss index over them, frame-level embeddings, "
             "thumbnails and captions. Queries are encoded with the same model's text tower.", "",
             "## Use it", "", "```bash", f"python app.py --library hf-hub:{repo}", "```", "",
             "Without `--model` the app loads the model recorded below. Search it from Python with "
             "`precompute.open_library(huggingface_hub.snapshot_download(\"" + repo + "\", repo_type=\"dataset\"))`.",
             "", "## Model", "", "| | |", "|---|---|",
             _row("model spec", f"`{manifest.get('model', '')}`"),
             _row("fingerprint", f"`{manifest.get('fingerprint', '')}` (the app refuses other weights)"),
             _row("embedding size", manifest.get("dim")),
             _row("frames per video", f"{manifest.get('frames')} ({manifest.get('num_segments')} segments)"),
             _row("dtype", manifest.get("dtype", "float16")), "",
             "## Contents", "", "| | |", "|---|---|",
             _row("videos indexed", manifest.get("count", 0)),
             _row("files that could not be indexed", f"{manifest.get('failures', 0)} (see `failures.jsonl`)"),
             _row("video files included", facts.videos_uploaded or "no: thumbnails and posters only"),
             _row("generated captions", "yes" if manifest.get("generated_captions") else "no"),
             _row("thumbnails", f"{thumbs.get('height')} px strips" if thumbs.get("enabled", True) else "no"),
             _row("built", f"{manifest.get('created', '?')}, updated {manifest.get('updated', '?')}"), "",
             "## Index", "", "| | |", "|---|---|", *_index_rows(manifest.get("index") or {}), "",
             "## Build settings", "", "| setting | value |", "|---|---|",
             *[_row(k, f"`{v}`") for k, v in sorted(settings.items())], "",
             *_source_section(manifest, facts),
             "## Files", "",
             "`manifest.json` (format, model, settings), `videos.jsonl` (one record per row), `video_emb.npy` "
             "(float16 [N, D]), `frame_emb.npy` (float16 [N, T, D]), `index.faiss`, `failures.jsonl`, `thumbs/`, "
             "`posters/`" + (", `videos/` (the video files)" if facts.videos_uploaded else "") + ".", ""]
    return "\n".join(lines)
