// What the site reads, at build time, from the crawler's folder (MANIFEST_DIR, by default
// public/manifests) and from the filters.json the crawler was given (FILTERS_FILE), typed by
// the project's generated types (site-types/types/). No file name is derived here: index.json
// names each filter's manifest.
import { readFileSync } from "node:fs";
import { join } from "node:path";

import type { AllModels, Model } from "../../../site-types/types/all-models";
import type { Filters } from "../../../site-types/types/filters";
import type { Index, IndexEntry } from "../../../site-types/types/index";
import type { Manifest } from "../../../site-types/types/manifest";

export type Source = Model["source"];
export const SOURCES: readonly Source[] = ["civitai", "huggingface"];
export const SOURCE_NAMES: Record<Source, string> = {
  civitai: "CivitAI",
  huggingface: "Hugging Face",
};

const manifestDir = (): string =>
  process.env.MANIFEST_DIR ?? join(process.cwd(), "public", "manifests");

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

export const readFilters = (): Filters =>
  readJson<Filters>(process.env.FILTERS_FILE ?? join(process.cwd(), "filters.json"));
export const readIndex = (): Index => readJson<Index>(join(manifestDir(), "index.json"));
export const readAllModels = (): AllModels =>
  readJson<AllModels>(join(manifestDir(), "all-models.json"));
export const readManifest = (entry: IndexEntry): Manifest =>
  readJson<Manifest>(join(manifestDir(), entry.file));

/** The filters the site lists: those of filters.json with a manifest (index.json says). */
export function listedFilters(): IndexEntry[] {
  return readIndex().filters.filter((entry) => entry.models !== null);
}

/** A filter's label, as filters.json gives it. */
export function filterLabel(source: Source, name: string): string | undefined {
  return readFilters()[source]?.find((filter) => filter.name === name)?.label;
}

export const filterPath = (source: Source, name: string): string => `/filters/${source}/${name}/`;
export const modelPath = (source: Source, slug: string): string => `/models/${source}/${slug}/`;

export function isSource(value: string): value is Source {
  return (SOURCES as readonly string[]).includes(value);
}
