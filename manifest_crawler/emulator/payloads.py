"""Full JSON payloads of catalogue models, rendered only for the page being served.

Every payload derives from (seed, model) alone, so a model looks the same on every page and
in every run. Bulky filler (prompts, descriptions, hashes) is drawn from pools built once
at import: pages are several megabytes and rendering must not dominate a benchmark.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from random import Random
from typing import Any

from .catalogue import CivitaiCatalogue, HfCatalogue, stable_seed
from .vocabulary import (
    BASE_MODELS,
    CIVITAI_STATS,
    CIVITAI_TAGS,
    CIVITAI_TYPES,
    FLAGGED_NSFW_LEVEL,
    HF_FAMILIES,
    HF_LIBRARIES,
    HF_PIPELINES,
    MODES,
    NSFW_LEVELS,
    words,
)

_WORDS = words(
    "masterpiece best quality ultra detailed 8k photorealistic cinematic lighting soft focus "
    "portrait of a woman man girl knight dragon castle forest city night neon rain reflections "
    "volumetric fog golden hour sunset bokeh depth of field sharp intricate highly detailed "
    "anime style illustration watercolor oil painting concept art trending on artstation "
    "dynamic pose looking at viewer smile long hair short hair blue eyes red dress armor "
    "futuristic cyberpunk steampunk fantasy landscape mountains ocean clouds sky stars "
    "(detailed face:1.2) (perfect hands:1.1) <lora:detail_tweaker:0.6> film grain analog photo"
)
_NEGATIVE = words(
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
    "cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, "
    "watermark, username, blurry, deformed, disfigured, mutated hands, poorly drawn face",
    ", ",
)
_SAMPLERS = ("DPM++ 2M Karras", "Euler a", "DPM++ SDE Karras", "Euler", "DDIM", "UniPC")
_SIZES = ((512, 768), (832, 1216), (1024, 1024), (768, 512), (1216, 832), (896, 1152))


def _pool_prompts(rng: Random, count: int, low: int, high: int) -> tuple[str, ...]:
    return tuple(" ".join(rng.choices(_WORDS, k=rng.randint(low, high))) for _ in range(count))


_POOL_RNG = Random(20261101)
_PROMPTS = _pool_prompts(_POOL_RNG, 256, 15, 70)
_NEGATIVES = tuple(
    ", ".join(_POOL_RNG.sample(_NEGATIVE, _POOL_RNG.randint(4, 14))) for _ in range(64)
)
_PARAGRAPHS = tuple(
    "<p>"
    + " ".join(_POOL_RNG.choices(_WORDS, k=_POOL_RNG.randint(20, 90)))
    + (" <strong>Recommended weight: 0.6-0.8.</strong>" if _POOL_RNG.random() < 0.3 else "")
    + (
        ' See <a target="_blank" rel="ugc" href="https://civitai.com/articles/1234">the guide</a>.'
        if _POOL_RNG.random() < 0.2
        else ""
    )
    + "</p>"
    for _ in range(128)
)
_HEX = tuple(hashlib.sha256(str(n).encode()).hexdigest().upper() for n in range(512))
_BLURHASH_CHARS = (
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
)
_BLURHASHES = tuple("".join(_POOL_RNG.choices(_BLURHASH_CHARS, k=28)) for _ in range(256))
_BASE_MODEL_TYPES = ("Standard", "Standard", "Standard", "Inpainting", None)
_VERSION_NAMES = (
    "v1.0",
    "v2.0",
    "v3.0",
    "v1.5",
    "v2.1",
    "XL",
    "Lightning",
    "Turbo",
    "fp16",
    "beta",
)
_AIR_ECOSYSTEM = {
    "SD 1.5": "sd1",
    "SDXL 1.0": "sdxl",
    "Pony": "sdxl",
    "Illustrious": "sdxl",
    "NoobAI": "sdxl",
    "Flux.1 D": "flux1",
    "Flux.1 S": "flux1",
    "SD 3.5": "sd3",
    "SD 2.1": "sd2",
    "Hunyuan Video": "hyv1",
    "Wan Video": "wanvideo",
    "Other": "other",
}
# A family's other names share its ecosystem (Pony V7 excepted: AuraFlow-based).
_AIR_ECOSYSTEM.update(
    {name: "sd1" for name in ("SD 1.5 LCM", "SD 1.5 Hyper")}
    | {name: "sdxl" for name in ("SDXL Lightning", "SDXL Hyper", "SDXL Turbo", "SDXL 1.0 LCM")}
    | {"Pony V7": "auraflow", "Flux.1 Krea": "flux1", "Flux.1 Kontext": "flux1"}
    | {name: "sd3" for name in BASE_MODELS if name.startswith("SD 3.5")}
    | {name: "wanvideo" for name in BASE_MODELS if name.startswith("Wan Video")}
)

_IMAGE_HOST = "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA"
_GGUF_QUANTS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q8_0", "f16")

# Markers rendered into descriptions when the control-character fault is on; the server
# swaps their JSON escapes for the raw bytes after serialisation.
CONTROL_MARKERS = "\x01\t\x1f"


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


# --------------------------------------------------------------------------------------
# CivitAI
# --------------------------------------------------------------------------------------


def civitai_item(
    cat: CivitaiCatalogue,
    index: int,
    *,
    primary_file_only: bool = False,
    control_chars: bool = False,
) -> dict[str, Any]:
    """The ``items[]`` entry of one model, as ``GET /api/v1/models`` returns it."""
    model_id = cat.ids[index]
    rng = Random(stable_seed(cat.seed, 10, model_id))
    rr = rng.random
    mtype = CIVITAI_TYPES[cat.type[index]]
    level = cat.nsfw_level[index]
    mode = MODES[cat.mode[index]]
    nulls = cat.null_mask[index]
    stats: dict[str, int | None] = {
        name: None if nulls >> bit & 1 else cat.stats[bit][index]
        for bit, name in enumerate(CIVITAI_STATS)
    }
    creator: str = cat.creators[cat.creator[index]]
    username: str | int = creator
    if creator.isdigit():
        # Upstream quirk kept on purpose: all-digit usernames arrive as JSON numbers.
        username = int(creator)

    description: str | None = None
    if rr() > 0.05:
        description = "".join(
            _PARAGRAPHS[int(rr() * len(_PARAGRAPHS))] for _ in range(1 + int(rr() * 4))
        )
        if control_chars:
            cut = len(description) // 2
            description = f"{description[:cut]}{CONTROL_MARKERS}{description[cut:]}"

    base_mask = cat.base_mask[index]
    bases = [b for bit, b in enumerate(BASE_MODELS) if base_mask >> bit & 1]
    n_versions = cat.versions[index]
    published = cat.published[index]
    version_levels = _version_levels(rr, level, n_versions)
    versions = []
    for v in range(n_versions):
        # The newest version comes first and carries the model's latest publication date.
        version_published = published - v * (3 * 86_400 + int(rr() * 40 * 86_400))
        versions.append(
            _civitai_version(
                rng,
                model_id,
                v,
                n_versions,
                mtype,
                bases[v % len(bases)],
                version_published,
                version_levels[v],
                mode,
                primary_file_only,
            )
        )

    item: dict[str, Any] = {
        "id": model_id,
        "name": cat.names[index],
        "description": description,
        "allowNoCredit": rr() < 0.7,
        "allowCommercialUse": ["Image", "RentCivit"] if rr() < 0.6 else ["None"],
        "allowDerivatives": rr() < 0.8,
        "allowDifferentLicense": rr() < 0.7,
        "type": mtype,
        "minor": False,
        "sfwOnly": level == 1 and rr() < 0.1,
        "poi": False,
        "nsfw": level == FLAGGED_NSFW_LEVEL,
        "nsfwLevel": level,
        "availability": "Public",
        "cosmetic": None,
        "supportsGeneration": rr() < 0.5,
        "stats": stats,
    }
    if mode is not None:
        item["mode"] = mode
    tags = cat.tag_mask[index]
    item["creator"] = {
        "username": username,
        "image": (
            f"{_IMAGE_HOST}/{_HEX[model_id % 512][:36]}/width=96/avatar.jpeg"
            if rr() < 0.8
            else None
        ),
    }
    item["tags"] = [t for bit, t in enumerate(CIVITAI_TAGS) if tags >> bit & 1]
    item["modelVersions"] = versions
    return item


def _version_levels(rr: Callable[[], float], level: int, n_versions: int) -> list[int]:
    """Each version's nsfwLevel, whose bit-or is the model's ``level`` (a flagged model's 60
    keeps its R, X and XXX bits: Blocked is no image's level)."""
    bits = [bit for bit in NSFW_LEVELS.values() if level & bit]
    levels = [0] * n_versions
    for bit in bits:
        levels[int(rr() * n_versions)] |= bit
    for v, version_level in enumerate(levels):
        if not version_level or rr() < 0.3:
            levels[v] |= bits[int(rr() * len(bits))]
    return levels


def _civitai_version(
    rng: Random,
    model_id: int,
    position: int,
    n_versions: int,
    mtype: str,
    base: str,
    published: int,
    level: int,
    mode: str | None,
    primary_file_only: bool,
) -> dict[str, Any]:
    rr = rng.random
    version_id = 3_000_000 + model_id * 8 + position
    checkpoint = mtype == "Checkpoint"
    n_files = 1 if not checkpoint else 1 + int(rr() * 3)
    files = []
    for f in range(n_files):
        size_kb = (2_000_000 + rr() * 4_500_000 if checkpoint else 9_000 + rr() * 200_000) / (1 + f)
        digest = _HEX[(model_id + position * 7 + f) % 512]
        suffix = "" if f == 0 else f"_{f}"
        files.append(
            {
                "id": version_id * 4 + f,
                "sizeKB": round(size_kb, 4),
                "name": f"model{model_id}_v{n_versions - position}{suffix}.safetensors",
                "type": "Model" if f == 0 else ("Pruned Model", "Config", "VAE")[f % 3],
                "pickleScanResult": "Success",
                "pickleScanMessage": "No Pickle imports",
                "virusScanResult": "Success",
                "virusScanMessage": None,
                "scannedAt": iso(published - 3600),
                "metadata": {
                    "format": "SafeTensor",
                    "size": "pruned" if rr() < 0.6 else "full",
                    "fp": "fp16" if rr() < 0.7 else "fp32",
                },
                "hashes": {
                    "AutoV1": digest[:8],
                    "AutoV2": digest[:10],
                    "SHA256": digest,
                    "CRC32": digest[10:18],
                    "BLAKE3": digest.lower(),
                    "AutoV3": digest[2:14].lower(),
                },
                "primary": f == 0,
                "downloadUrl": f"https://civitai.com/api/download/models/{version_id}"
                + ("" if f == 0 else f"?type={'Pruned%20Model' if f == 1 else 'Config'}"),
            }
        )
    if primary_file_only:
        files = files[:1]
    if mode == "Archived":
        files = []

    images = []
    if mode != "TakenDown":
        low, high = (6, 18) if checkpoint else (2, 8)
        # Each image shows one level; together they show every level of the version.
        image_levels = [bit for bit in NSFW_LEVELS.values() if level & bit]
        count = max(len(image_levels), min(20, low + int(rr() * (high - low + 1))))
        for n in range(count):
            width, height = _SIZES[int(rr() * len(_SIZES))]
            image_id = version_id * 32 + n
            meta = None
            if rr() < 0.7:
                meta = {
                    "seed": int(rr() * 4_294_967_295),
                    "steps": 20 + int(rr() * 30),
                    "prompt": _PROMPTS[int(rr() * len(_PROMPTS))],
                    "sampler": _SAMPLERS[int(rr() * len(_SAMPLERS))],
                    "cfgScale": round(3 + rr() * 6, 1),
                    "clipSkip": 2 if rr() < 0.5 else 1,
                    "negativePrompt": _NEGATIVES[int(rr() * len(_NEGATIVES))],
                    "Size": f"{width}x{height}",
                    "Model": f"model{model_id}",
                }
            image_level = (
                image_levels[n]
                if n < len(image_levels)
                else image_levels[int(rr() * len(image_levels))]
            )
            images.append(
                {
                    "id": image_id,
                    "url": (
                        f"{_IMAGE_HOST}/{_HEX[image_id % 512][:8].lower()}-"
                        f"{_HEX[image_id % 511][:4].lower()}-{_HEX[image_id % 509][:12].lower()}"
                        f"/width={width}/{image_id}.jpeg"
                    ),
                    "nsfwLevel": image_level,
                    "width": width,
                    "height": height,
                    "hash": _BLURHASHES[image_id % len(_BLURHASHES)],
                    "type": "image",
                    "metadata": {
                        "hash": _BLURHASHES[(image_id + 1) % len(_BLURHASHES)],
                        "size": 200_000 + int(rr() * 3_000_000),
                        "width": width,
                        "height": height,
                    },
                    "minor": False,
                    "poi": False,
                    "meta": meta,
                    "availability": "Public",
                    "hasMeta": meta is not None,
                    "hasPositivePrompt": meta is not None,
                    "onSite": False,
                    "remixOfId": None,
                }
            )

    trained_words = (
        []
        if checkpoint or rr() < 0.3
        else [" ".join(rng.choices(_WORDS, k=1 + int(rr() * 3))) for _ in range(1 + int(rr() * 3))]
    )
    downloads = int(rr() * 50_000)
    return {
        "id": version_id,
        "index": position,
        "name": _VERSION_NAMES[(n_versions - 1 - position) % len(_VERSION_NAMES)],
        "baseModel": base,
        "baseModelType": _BASE_MODEL_TYPES[int(rr() * len(_BASE_MODEL_TYPES))],
        "createdAt": iso(published - 7200),
        "publishedAt": iso(published),
        "status": "Published",
        "availability": "Public",
        "nsfwLevel": level,
        "description": _PARAGRAPHS[int(rr() * len(_PARAGRAPHS))] if rr() < 0.5 else None,
        "trainedWords": trained_words,
        "trainingStatus": None,
        "trainingDetails": None,
        "uploadType": "Created",
        "usageControl": "Download",
        "air": f"urn:air:{_AIR_ECOSYSTEM[base]}:{mtype.lower()}:civitai:{model_id}@{version_id}",
        "stats": {
            "downloadCount": downloads,
            "ratingCount": 0,
            "rating": 0,
            "thumbsUpCount": int(downloads * rr() * 0.1),
            "thumbsDownCount": 0,
        },
        "files": files,
        "images": images,
        "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
    }


# --------------------------------------------------------------------------------------
# Hugging Face
# --------------------------------------------------------------------------------------


def hf_object_id(cat: HfCatalogue, index: int) -> str:
    """A Mongo-style ``_id``: creation time then a per-model unique tail, 24 hex digits."""
    tail = (index * 0x9E3779B97F4A7C15 + cat.seed) & 0xFFFFFFFFFFFFFFFF
    return f"{cat.created[index] & 0xFFFFFFFF:08x}{tail:016x}"


def hf_sha(cat: HfCatalogue, index: int) -> str:
    key = f"{cat.seed}:{cat.ids[index]}:{cat.modified[index]}"
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()


def hf_entry(
    cat: HfCatalogue,
    index: int,
    *,
    full: bool = False,
    expand: tuple[str, ...] | None = None,
    config: bool = False,
    card_data: bool = False,
) -> dict[str, Any]:
    """One element of ``GET /api/models``, shaped by full/expand/config/cardData."""
    model_id = cat.ids[index]
    if expand is not None:
        entry: dict[str, Any] = {"_id": hf_object_id(cat, index), "id": model_id}
        for name in expand:
            value = _hf_property(cat, index, name)
            if value is not None:
                entry[name] = value
        return entry

    entry = {
        "_id": hf_object_id(cat, index),
        "id": model_id,
        "likes": cat.likes[index],
        "trendingScore": cat.trending[index],
        "private": False,
        "downloads": cat.downloads[index],
        "tags": cat.tags(index),
    }
    pipeline = cat.pipeline[index]
    if pipeline >= 0:
        entry["pipeline_tag"] = HF_PIPELINES[pipeline]
    library = cat.library[index]
    if library >= 0:
        entry["library_name"] = HF_LIBRARIES[library]
    entry["createdAt"] = iso(cat.created[index])
    entry["modelId"] = model_id
    if full:
        entry["author"] = cat.owners[cat.owner[index]]
        entry["lastModified"] = iso(cat.modified[index])
        entry["gated"] = _gated(cat, index)
        entry["disabled"] = False
        entry["sha"] = hf_sha(cat, index)
        entry["siblings"] = [{"rfilename": name} for name in hf_siblings(cat, index)]
    if config:
        entry["config"] = _hf_config(cat, index)
    if card_data:
        entry["cardData"] = _hf_card_data(cat, index)
    return entry


def _gated(cat: HfCatalogue, index: int) -> bool | str:
    return (False, "auto", "manual")[cat.gated[index]]


def hf_siblings(cat: HfCatalogue, index: int) -> list[str]:
    """Repository file names: what makes ``full=true`` pages far larger."""
    library = cat.library[index]
    params = max(cat.num_parameters[index], 10_000_000)
    files = [".gitattributes", "README.md"]
    if library == HF_LIBRARIES.index("gguf") or "GGUF" in cat.ids[index]:
        stem = cat.ids[index].rsplit("/", 1)[1]
        files.extend(f"{stem}.{quant}.gguf" for quant in _GGUF_QUANTS)
        return files
    if library == HF_LIBRARIES.index("diffusers"):
        files.append("model_index.json")
        for part in ("scheduler", "text_encoder", "tokenizer", "unet", "vae"):
            files.append(f"{part}/config.json")
            files.append(f"{part}/diffusion_pytorch_model.safetensors")
        return files
    files.append("config.json")
    shards = max(1, params // 4_000_000_000)
    if shards == 1:
        files.append("model.safetensors")
    else:
        files.extend(f"model-{n:05d}-of-{shards:05d}.safetensors" for n in range(1, shards + 1))
        files.append("model.safetensors.index.json")
    files.extend(("special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"))
    if cat.pipeline[index] == 0:
        files.append("generation_config.json")
    return files


def _hf_config(cat: HfCatalogue, index: int) -> dict[str, Any]:
    family = HF_FAMILIES[cat.family[index]][0]
    return {"architectures": [f"{family.title().replace('-', '')}Model"], "model_type": family}


def _hf_card_data(cat: HfCatalogue, index: int) -> dict[str, Any]:
    card: dict[str, Any] = {}
    license_name = cat.license(index)
    if license_name is not None:
        card["license"] = license_name
    pipeline = cat.pipeline[index]
    if pipeline >= 0:
        card["pipeline_tag"] = HF_PIPELINES[pipeline]
    card["tags"] = [HF_FAMILIES[cat.family[index]][0]]
    return card


def _hf_property(cat: HfCatalogue, index: int, name: str) -> Any:
    # Properties the emulator does not model get the Hub's "nothing here" value, or are
    # omitted (None), as the Hub omits them.
    params = cat.num_parameters[index]
    library = cat.library[index]
    pipeline = cat.pipeline[index]
    match name:
        case "author":
            return cat.owners[cat.owner[index]]
        case "cardData":
            return _hf_card_data(cat, index)
        case "config":
            return _hf_config(cat, index)
        case "createdAt":
            return iso(cat.created[index])
        case "lastModified":
            return iso(cat.modified[index])
        case "disabled" | "private":
            return False
        case "downloads":
            return cat.downloads[index]
        case "downloadsAllTime":
            return cat.downloads[index] * 7
        case "gated":
            return _gated(cat, index)
        case "likes":
            return cat.likes[index]
        case "trendingScore":
            return cat.trending[index]
        case "library_name":
            return HF_LIBRARIES[library] if library >= 0 else None
        case "pipeline_tag":
            return HF_PIPELINES[pipeline] if pipeline >= 0 else None
        case "tags":
            return cat.tags(index)
        case "sha":
            return hf_sha(cat, index)
        case "siblings":
            return [{"rfilename": n} for n in hf_siblings(cat, index)]
        case "spaces" | "evalResults":
            return []
        case "childrenModelCount":
            return 0
        case "usedStorage":
            return max(params, 0) * 2
        case "safetensors":
            if params < 0:
                return None
            return {"parameters": {"BF16": params}, "total": params}
        case "gguf":
            if library != HF_LIBRARIES.index("gguf") or params < 0:
                return None
            return {"total": params, "architecture": HF_FAMILIES[cat.family[index]][0]}
        case "mask_token":
            return "[MASK]" if pipeline == HF_PIPELINES.index("fill-mask") else None
        case "transformersInfo":
            if library != 0:
                return None
            return {
                "auto_model": "AutoModel",
                "pipeline_tag": HF_PIPELINES[pipeline] if pipeline >= 0 else None,
                "processor": "AutoTokenizer",
            }
        case "inference":
            return "warm" if cat.trending[index] > 50 else None
        case "inferenceProviderMapping":
            return []
        case _:
            return None
