// The home page: every filter of filters.json that has a manifest, by source, in file order.
import { SOURCE_NAMES, SOURCES, filterPath, listedFilters, readFilters } from "../lib/data";

export default function Home() {
  const filters = readFilters();
  const listed = new Set(listedFilters().map((entry) => `${entry.source}:${entry.filter}`));
  return (
    <main>
      <h1>Models by filter</h1>
      {SOURCES.map((source) => (
        <section key={source} data-source={source}>
          <h2>{SOURCE_NAMES[source]}</h2>
          <ul>
            {(filters[source] ?? [])
              .filter((filter) => listed.has(`${source}:${filter.name}`))
              .map((filter) => (
                <li key={filter.name}>
                  <a href={filterPath(source, filter.name)} data-filter={filter.name}>
                    {filter.label}
                  </a>
                </li>
              ))}
          </ul>
        </section>
      ))}
    </main>
  );
}
