// What a Next.js site does with the crawler's files, type-checked against the generated types
// (`npm run check`). Pages read public/manifests/ at build time, after `scrapy crawl all`.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import type { AllModels, Model } from "../types/all-models";
import type { Changes } from "../types/changes";
import type { Manifest } from "../types/manifest";
import type { RunReport } from "../types/run-report";

export type Source = Model["source"];

const manifestDir = (): string =>
  process.env.MANIFEST_DIR ?? join(process.cwd(), "public", "manifests");

async function readManifestFile<T>(name: string): Promise<T> {
  return JSON.parse(await readFile(join(manifestDir(), name), "utf8")) as T;
}

/** The crawler's file name of a filter's manifest (manifests.manifest_filename). */
export function manifestFile(source: Source, filter: string): string {
  return `${source === "civitai" ? "civitai" : "hf"}-${filter.replaceAll("/", "-")}.json`;
}

export function modelPath(source: Source, slug: string): string {
  return `/models/${source}/${slug}`;
}

/** app/models/[source]/[slug]/page.tsx: one static route per model of all-models.json. */
export async function generateStaticParams(): Promise<{ source: Source; slug: string }[]> {
  const all = await readManifestFile<AllModels>("all-models.json");
  return all.models.map((model) => ({ source: model.source, slug: model.slug }));
}

export interface FilterPage {
  filter: string;
  updated: string;
  models: { href: string; name: string }[];
}

/** app/[source]/[...filter]/page.tsx: a filter's list, in the API's order. */
export async function filterPage(source: Source, filter: string): Promise<FilterPage> {
  const manifest = await readManifestFile<Manifest>(manifestFile(source, filter));
  return {
    filter: manifest.filter,
    updated: manifest.timestamp,
    models: manifest.models.map((model) => ({
      href: modelPath(source, model.slug),
      name: model.name,
    })),
  };
}

/** A build step: the filters the last run could not refresh, or cut short by their page
 * budget, to show a notice on their page. */
export async function staleFilters(): Promise<string[]> {
  const report = await readManifestFile<RunReport>("run-report.json");
  return report.filters
    .filter((row) => row.status !== "fresh")
    .map((row) => `${row.source}:${row.filter}`);
}

/** Pages of models that are in no manifest any more (for a redirect list or a purge). */
export async function gonePaths(): Promise<string[]> {
  const changes = await readManifestFile<Changes>("changes.json");
  return changes.gone.map((model) => modelPath(model.source, model.slug));
}
