"""Facts of ../shared/docs/api-notes.md that tests pin the emulator and filters.json to, written
here and not read from the emulator's vocabulary: an emulator that agrees with the crawler
proves nothing."""

#: CivitAI's ModelType values (packages/civitai-db-schema/src/enums.ts): ``types`` refuses others.
CIVITAI_TYPES = (
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
    "TextEncoder",
    "UNet",
    "CLIPVision",
    "Poses",
    "Wildcards",
    "Workflows",
    "ComfyWorkflows",
    "Detection",
    "VisionLanguage",
    "CLIP",
    "LLM",
    "Other",
)
