// One page per filter: a catch-all route, since filter names hold "/". Its label comes from
// filters.json, its models from the manifest index.json names, in the manifest's order.
import { notFound } from "next/navigation";

import {
  SOURCE_NAMES,
  filterLabel,
  isSource,
  listedFilters,
  modelPath,
  readManifest,
} from "../../../../lib/data";

export const dynamicParams = false;

export function generateStaticParams(): { source: string; name: string[] }[] {
  return listedFilters().map((entry) => ({ source: entry.source, name: entry.filter.split("/") }));
}

export default async function FilterPage({
  params,
}: {
  params: Promise<{ source: string; name: string[] }>;
}) {
  const { source, name } = await params;
  const filter = name.join("/");
  const entry = listedFilters().find((e) => e.source === source && e.filter === filter);
  if (!isSource(source) || entry === undefined) notFound();
  const manifest = readManifest(entry);
  return (
    <main>
      <h1 data-label>{filterLabel(source, filter)}</h1>
      <p>
        {SOURCE_NAMES[source]} · {manifest.models.length} models · updated {manifest.timestamp}
      </p>
      <ol>
        {manifest.models.map((model) => (
          <li key={model.id} data-model-id={model.id}>
            <a href={modelPath(source, model.slug)}>{model.name}</a>
          </li>
        ))}
      </ol>
    </main>
  );
}
