// One page per model of all-models.json, with its name and source.
import { notFound } from "next/navigation";

import { SOURCE_NAMES, readAllModels } from "../../../../lib/data";

export const dynamicParams = false;

export function generateStaticParams(): { source: string; slug: string }[] {
  return readAllModels().models.map((model) => ({ source: model.source, slug: model.slug }));
}

export default async function ModelPage({
  params,
}: {
  params: Promise<{ source: string; slug: string }>;
}) {
  const { source, slug } = await params;
  const model = readAllModels().models.find((m) => m.source === source && m.slug === slug);
  if (model === undefined) notFound();
  return (
    <main>
      <h1 data-model-id={model.id}>{model.name}</h1>
      <p>
        Source: <span data-source={model.source}>{SOURCE_NAMES[model.source]}</span>
      </p>
      <p>
        Id: <code>{model.id}</code>
      </p>
    </main>
  );
}
