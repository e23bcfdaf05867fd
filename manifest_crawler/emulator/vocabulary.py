"""The closed vocabularies of both APIs and the weights the catalogues draw them with.

Values the real APIs accept or return are public (their order matters: catalogues store
positions in these tuples). Weights and word pools are the emulator's own choices, picked
so that every filter a crawler may ask for has a fair number of answers.
"""

from __future__ import annotations


def words(text: str, sep: str | None = None) -> tuple[str, ...]:
    # Long word lists stay readable as one string instead of a literal per line.
    return tuple(text.split(sep))


# -- CivitAI --------------------------------------------------------------------------------

CIVITAI_TYPES: tuple[str, ...] = (
    "Checkpoint",
    "TextualInversion",
    "Hypernetwork",
    "AestheticGradient",
    "LORA",
    "LoCon",
    "DoRA",
    "Controlnet",
    "Upscaler",
    "MotionModule",
    "VAE",
    "Poses",
    "Wildcards",
    "Workflows",
    "Detection",
    "Other",
    # Newer types, appended so that the positions above keep their meaning.
    "TextEncoder",
    "UNet",
    "CLIPVision",
    "ComfyWorkflows",
    "VisionLanguage",
    "CLIP",
    "LLM",
)
TYPE_WEIGHTS = (
    18,
    8,
    1.5,
    0.5,
    45,
    5,
    2,
    3,
    1.5,
    1,
    2,
    2,
    2,
    4,
    1.5,
    3,
    0.5,
    0.5,
    0.3,
    1,
    0.3,
    0.3,
    0.3,
)

BASE_MODELS: tuple[str, ...] = (
    "SD 1.5",
    "SDXL 1.0",
    "Pony",
    "Illustrious",
    "Flux.1 D",
    "Flux.1 S",
    "SD 3.5",
    "SD 2.1",
    "NoobAI",
    "Hunyuan Video",
    "Wan Video",
    "Other",
    # Each family's other current names (basemodel.constants.ts), appended.
    "SD 1.5 LCM",
    "SD 1.5 Hyper",
    "SDXL Lightning",
    "SDXL Hyper",
    "SDXL Turbo",
    "Pony V7",
    "Flux.1 Krea",
    "Flux.1 Kontext",
    "SD 3.5 Large",
    "SD 3.5 Medium",
    "SD 3.5 Large Turbo",
    "Wan Video 14B t2v",
    "Wan Video 14B i2v 480p",
    "Wan Video 14B i2v 720p",
    "Wan Video 1.3B t2v",
    "Wan Video 2.2 TI2V-5B",
    "Wan Video 2.2 I2V-A14B",
    "Wan Video 2.2 T2V-A14B",
    "Wan Video 2.5 T2V",
    "Wan Video 2.5 I2V",
    "SDXL 1.0 LCM",
    "Wan Video 2.7",
)
#: Hidden legacy names (api-notes): only models made before their successors carry them, so
#: they are rare; "SD 3.5" and "Wan Video" above.
LEGACY_BASE_MODELS: frozenset[str] = frozenset(("SD 3.5", "Wan Video"))
BASE_WEIGHTS = (
    *(25, 20, 15, 15, 10, 2, 0.3, 2, 4, 1.5, 0.3, 1.5),
    *(1, 1, 1.5, 1, 1),  # SD 1.5 and SDXL variants
    *(1, 1.5, 1.5),  # Pony V7, Flux.1 Krea and Kontext
    *(0.8, 0.8, 0.5),  # SD 3.5 Large, Medium, Large Turbo
    *(0.4, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.3, 0.3),  # Wan Video
    *(0.5, 0.3),  # SDXL 1.0 LCM, Wan Video 2.7
)

CIVITAI_SORTS: tuple[str, ...] = (
    "Highest Rated",
    "Most Downloaded",
    "Most Liked",
    "Most Discussed",
    "Most Collected",
    "Most Images",
    "Newest",
    "Oldest",
)
NSFW_LEVELS: dict[str, int] = {"PG": 1, "PG13": 2, "R": 4, "X": 8, "XXX": 16}
#: The nsfwLevel of every model its owner or a moderator flagged nsfw: R|X|XXX|Blocked.
FLAGGED_NSFW_LEVEL = 60
#: The browsing levels `nsfw` stands for: false is PG, true every level (api-notes).
BROWSING_SFW = 1
BROWSING_ALL = 31
CHECKPOINT_TYPES: tuple[str, ...] = ("", "Trained", "Merge")
MODES: tuple[str | None, ...] = (None, "Archived", "TakenDown")
CIVITAI_STATS: tuple[str, ...] = (
    "downloadCount",
    "thumbsUpCount",
    "thumbsDownCount",
    "commentCount",
    "collectedCount",
    "imageCount",
    "tippedAmountCount",
)
CIVITAI_TAGS: tuple[str, ...] = words(
    "character|style|concept|clothing|base model|anime|photorealistic|realistic|celebrity|"
    "woman|man|girls|poses|tool|background|objects|buildings|architecture|vehicle|animal|"
    "sci-fi|fantasy|cartoon|game character|horror|food|3d|pixel art|retro|portrait|"
    "landscape|nature|armor|weapons|cyberpunk|steampunk|meme|lineart|watercolor|comic|"
    "chibi|monster|slider|detail|lighting|photography|illustration|semi-realistic",
    "|",
)

NAME_ADJECTIVES = words(
    "Detailed Realistic Dreamy Cinematic Epic Soft Neon Vintage Cute Dark Ultra Hyper Pastel "
    "Gothic Cyber Mystic Retro Magic Golden Silent Crystal Velvet Wild Lucid Perfect Better "
    "Tiny Grand"
)
NAME_NOUNS = words(
    "Portrait Anime Landscape Style Mix Diffusion Vision Dream Lighting Tweaker Slider Armor "
    "Girl Knight Dragon Castle Forest City Robot Painter Sketch Photon Pixel Hands Eyes "
    "Realism Merge Workflow"
)
NAME_UNICODE = words(
    "初音ミク 少女 アニメ 風景 Café Ünïcødé Ñandú Größe ребёнок Łódź 東方 한국어 🔥 ✨ Ωmega "
    "Žena Ελληνικά 水墨画"
)
NAME_SUFFIXES = words(
    "v1;v2.0;XL;SDXL;Pony;LoRA;[SD1.5];| Flux;(Illustrious);- LyCORIS;v3.5;Turbo;Lightning;"
    "Inpainting;Pruned;NoobAI;2.5D",
    ";",
)
# Names shared by many unrelated models, as on the real site.
DUPLICATE_NAMES = words(
    "Detail Tweaker|Add More Details|Better Hands|Epic Realism|Anime Lineart|Film Grain|"
    "Perfect Eyes|Pixel Art XL",
    "|",
)
SYLLABLES = words(
    "ka ri mo ne zu shi ta lo vex ar bel dor fin gri hal jin kor lum nyx pix qua ros syn tor "
    "umi vel wyn xar yo zed"
)

# -- Hugging Face ---------------------------------------------------------------------------

HF_PIPELINES: tuple[str, ...] = (
    "text-generation",
    # In the place of text2text-generation, retired in 2025-07 (its models moved under
    # text-generation; the Hub serves nothing for it): the catalogue keeps its draws.
    "text-ranking",
    "sentence-similarity",
    "question-answering",
    "fill-mask",
    "feature-extraction",
    "text-classification",
    "token-classification",
    "summarization",
    "translation",
    "image-classification",
    "object-detection",
    "image-segmentation",
    "text-to-image",
    "image-to-text",
    "automatic-speech-recognition",
    "text-to-speech",
    "audio-classification",
    "zero-shot-classification",
    "image-text-to-text",
    "depth-estimation",
)
PIPELINE_WEIGHTS = (25, 4, 5, 2, 4, 5, 8, 3, 1.5, 2, 4, 1.5, 1, 8, 1, 4, 1.5, 1, 1, 3, 0.5)
# Pipelines whose models carry language tags.
TEXT_PIPELINES = frozenset((*range(10), 18, 19))

HF_LIBRARIES: tuple[str, ...] = (
    "transformers",
    "pytorch",
    "tf",  # TensorFlow weights: the Hub tags them tf (api-notes)
    "jax",
    "diffusers",
    "gguf",
    "onnx",
    "sentence-transformers",
    "peft",
    "keras",
    "timm",
    "mlx",
    "safetensors",
    "transformers.js",
    "tf-keras",  # the legacy Keras 2 library, beside keras (Keras 3): model-libraries.ts
)
# tf-keras only where a pipeline prefers it: the other draws stay as they were.
LIBRARY_WEIGHTS = (40, 4, 2, 1, 8, 6, 2, 5, 8, 1, 2, 3, 2, 1, 0)
# Libraries a pipeline's models usually use (drawn most of the time instead of the weights).
PREFERRED_LIBRARIES: dict[str, tuple[str, ...]] = {
    "text-generation": ("transformers", "transformers", "gguf", "mlx", "peft"),
    "text-to-image": ("diffusers", "diffusers", "diffusers", "peft"),
    "sentence-similarity": ("sentence-transformers",),
    "feature-extraction": ("sentence-transformers", "transformers", "transformers.js"),
    "image-classification": ("timm", "transformers", "keras", "tf-keras"),
    "image-text-to-text": ("transformers", "mlx"),
}

HF_LICENSES: tuple[str, ...] = (
    "apache-2.0",
    "mit",
    "gpl-3.0",
    "gpl-2.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "openrail",
    "creativeml-openrail-m",
    "llama3",
    "bsd-3-clause",
    "other",
)
LICENSE_WEIGHTS = (35, 20, 3, 1, 5, 3, 5, 4, 4, 4, 2, 10)
HF_LANGUAGES: tuple[str, ...] = ("en", "zh", "fr", "de", "es", "ja", "ko", "ru", "multilingual")
HF_FLAG_TAGS: tuple[str, ...] = (
    "conversational",
    "text-generation-inference",
    "autotrain_compatible",
    "endpoints_compatible",
)
HF_SORTS: tuple[str, ...] = (
    "trendingScore",
    "downloads",
    "likes",
    "lastModified",
    "createdAt",
    "likes30d",
    "id",
)
# Properties `expand` may name, as huggingface_hub lists them; anything else is a 400.
HF_EXPAND_PROPERTIES: frozenset[str] = frozenset(
    words(
        "author baseModels cardData childrenModelCount config createdAt disabled downloads "
        "downloadsAllTime evalResults gated gguf inference inferenceProviderMapping "
        "lastModified library_name likes mask_token model-index pipeline_tag private "
        "resourceGroup safetensors sha siblings spaces tags transformersInfo trendingScore "
        "usedStorage widgetData"
    )
)

# (model_type tag, name stems, pipelines it serves)
HF_FAMILIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = tuple(
    (tag, words(stems), words(pipelines))
    for tag, stems, pipelines in (
        (
            "llama",
            "Llama-3.1-8B Llama-3.2-1B Llama-3.2-3B Llama-3.3-70B TinyLlama-1.1B",
            "text-generation",
        ),
        ("mistral", "Mistral-7B Mistral-Nemo-12B Mixtral-8x7B", "text-generation"),
        ("qwen2", "Qwen2.5-7B Qwen2.5-0.5B Qwen2.5-72B Qwen3-8B", "text-generation"),
        ("gemma2", "gemma-2-2b gemma-2-9b gemma-3-27b", "text-generation image-text-to-text"),
        ("phi3", "Phi-3-mini Phi-3.5-mini phi-4", "text-generation"),
        ("gpt2", "gpt2 distilgpt2 gpt2-medium", "text-generation"),
        ("t5", "t5-small flan-t5-base mt5-large", "text-ranking summarization"),
        (
            "bart",
            "bart-large-cnn bart-base mbart-large-50",
            "summarization text-ranking zero-shot-classification",
        ),
        ("marian", "opus-mt-en-de opus-mt-fr-en opus-mt-zh-en", "translation"),
        (
            "bert",
            "bert-base-uncased bert-large-cased distilbert-base MiniLM-L6",
            "fill-mask text-classification token-classification question-answering "
            "zero-shot-classification",
        ),
        (
            "roberta",
            "roberta-base xlm-roberta-large deberta-v3-base",
            "fill-mask text-classification token-classification question-answering",
        ),
        (
            "mpnet",
            "all-mpnet-base-v2 bge-small-en e5-large-v2 gte-base",
            "sentence-similarity feature-extraction",
        ),
        (
            "vit",
            "vit-base-patch16 convnext-tiny resnet-50",
            "image-classification feature-extraction",
        ),
        ("detr", "detr-resnet-50 yolos-tiny rt-detr-l", "object-detection"),
        ("segformer", "segformer-b0 mask2former-swin sam-vit-base", "image-segmentation"),
        ("dpt", "dpt-large depth-anything-v2-small glpn-nyu", "depth-estimation"),
        (
            "stable-diffusion",
            "stable-diffusion-v1-5 sdxl-base-1.0 sd-turbo anything-v5",
            "text-to-image",
        ),
        ("flux", "FLUX.1-dev FLUX.1-schnell flux-lora", "text-to-image"),
        ("blip", "blip-image-captioning git-base vit-gpt2-captioning", "image-to-text"),
        ("llava", "llava-1.5-7b Qwen2-VL-7B idefics2-8b", "image-text-to-text"),
        (
            "whisper",
            "whisper-small whisper-large-v3 wav2vec2-base-960h",
            "automatic-speech-recognition",
        ),
        ("speecht5", "speecht5_tts bark-small kokoro-82M", "text-to-speech"),
        (
            "audio-spectrogram-transformer",
            "ast-finetuned-audioset hubert-base-ks",
            "audio-classification",
        ),
    )
)
HF_VARIANTS = words(
    "Instruct it chat GGUF AWQ GPTQ 4bit 8bit Q4_K_M-GGUF bnb-4bit finetuned lora sft dpo v0.1 "
    "v2 uncensored merged exl2 MLX fp16 abliterated onnx distilled"
)
HF_TOKENS = words(
    "alpaca dolphin hermes orca zephyr vicuna wizard code math med legal fin tiny small base "
    "large xl squad imdb sst2 ner emotion sentiment news arabic german japanese korean spanish "
    "hindi"
)
HF_FAMOUS_OWNERS = words(
    "meta-llama google microsoft mistralai Qwen TheBloke bartowski unsloth sentence-transformers "
    "openai stabilityai black-forest-labs facebook nvidia deepseek-ai mlx-community "
    "lmstudio-community BAAI intfloat Helsinki-NLP allenai EleutherAI tiiuae HuggingFaceTB "
    "ibm-granite jinaai Salesforce timm onnx-community Xenova FacebookAI google-bert "
    "openai-community CompVis QuantFactory mradermacher"
)
OWNER_PARTS = words(
    "neo ai lab deep tensor quant byte open mind net vision lingo forge core nova flux data hub "
    "smart auto kai sora zen omni"
)
