// The browser check (run by check.sh after `next build`): serves out/ on a loopback port, opens
// the home page, a filter page and a model page in Debian's Chromium (playwright-core, no
// browser download), checks what each shows against the crawler's files, saves a screenshot of
// each in screenshots/, and checks that every page the files call for was exported.
// Exit 0 when all holds; 1 naming the first thing that does not.
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, resolve } from "node:path";
import { chromium } from "playwright-core";

const here = resolve(import.meta.dirname);
const out = join(here, "out");
const manifests = process.env.MANIFEST_DIR ?? join(here, "public", "manifests");
const filtersFile = process.env.FILTERS_FILE ?? join(here, "filters.json");
const screenshots = process.env.SCREENSHOTS ?? join(here, "screenshots");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

const read = (path) => JSON.parse(readFileSync(path, "utf8"));
const filters = read(filtersFile);
const index = read(join(manifests, "index.json"));
const allModels = read(join(manifests, "all-models.json"));

function fail(message) {
  console.error(`site check FAILED: ${message}`);
  process.exit(1);
}

function expectEqual(what, seen, wanted) {
  const [a, b] = [JSON.stringify(seen), JSON.stringify(wanted)];
  if (a !== b) fail(`${what}: shows ${a.slice(0, 500)}, the files say ${b.slice(0, 500)}`);
}

// Every page the files call for is in the export.
const listed = index.filters.filter((entry) => entry.models !== null);
for (const entry of listed) {
  const page = join(out, "filters", entry.source, ...entry.filter.split("/"), "index.html");
  if (!existsSync(page)) fail(`no page for filter ${entry.source}:${entry.filter} (${page})`);
}
for (const model of allModels.models) {
  const page = join(out, "models", model.source, model.slug, "index.html");
  if (!existsSync(page)) fail(`no page for model ${model.id} (${page})`);
}

const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json", ".txt": "text/plain", ".ico": "image/x-icon" };
const server = createServer((request, response) => {
  let path = join(out, decodeURIComponent(new URL(request.url, "http://x").pathname));
  if (!path.startsWith(out)) path = join(out, "404.html");
  if (existsSync(path) && statSync(path).isDirectory()) path = join(path, "index.html");
  if (!existsSync(path)) {
    response.writeHead(404, { "content-type": "text/html" });
    createReadStream(join(out, "404.html")).pipe(response);
    return;
  }
  response.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" });
  createReadStream(path).pipe(response);
});
await new Promise((ready) => server.listen(0, "127.0.0.1", ready));
const origin = `http://127.0.0.1:${server.address().port}`;

// As the machine's notes say to start Chromium here; Playwright gives it a fresh profile.
const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
mkdirSync(screenshots, { recursive: true });
const shots = [];
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  async function visit(path, name) {
    const response = await page.goto(origin + path);
    if (response === null || response.status() !== 200) fail(`${path}: HTTP ${response?.status()}`);
    const file = join(screenshots, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    shots.push(file);
  }

  // Home: every filter with a manifest, by source, in filters.json's order, with its label;
  // a preview says so (index.json's synthetic).
  await visit("/", "home");
  expectEqual("the preview notice", await page.locator("[data-synthetic]").count(), index.synthetic ? 1 : 0);
  for (const source of ["civitai", "huggingface"]) {
    const links = await page
      .locator(`section[data-source="${source}"] a[data-filter]`)
      .evaluateAll((as) => as.map((a) => [a.dataset.filter, a.textContent, a.getAttribute("href")]));
    const names = new Set(listed.filter((e) => e.source === source).map((e) => e.filter));
    const wanted = (filters[source] ?? [])
      .filter((f) => names.has(f.name))
      .map((f) => [f.name, f.label, `/filters/${source}/${f.name}/`]);
    expectEqual(`the home page's ${source} filters`, links, wanted);
  }

  // A filter page whose name holds "/" (the catch-all route), reached by its home-page link.
  const entry = listed.find((e) => e.filter.includes("/") && e.models > 0);
  if (entry === undefined) fail("no filter with a '/' in its name has models");
  await page.locator(`section[data-source="${entry.source}"] a[data-filter="${entry.filter}"]`).click();
  await page.waitForURL(`**/filters/${entry.source}/${entry.filter}/`);
  const manifest = read(join(manifests, entry.file));
  const label = filters[entry.source].find((f) => f.name === entry.filter).label;
  expectEqual("the filter page's title", await page.locator("h1[data-label]").textContent(), label);
  const rows = await page
    .locator("li[data-model-id]")
    .evaluateAll((lis) => lis.map((li) => [li.dataset.modelId, li.textContent]));
  expectEqual(
    `the models of ${entry.source}:${entry.filter}, in order`,
    rows,
    manifest.models.map((m) => [m.id, m.name]),
  );
  await page.screenshot({ path: join(screenshots, "filter.png"), fullPage: true });
  shots.push(join(screenshots, "filter.png"));

  // Its first model's page, reached by its link.
  const model = allModels.models.find((m) => m.id === manifest.models[0].id);
  await page.locator(`li[data-model-id="${model.id}"] a`).click();
  await page.waitForURL(`**/models/${model.source}/${model.slug}/`);
  expectEqual("the model page's name", await page.locator("h1[data-model-id]").textContent(), model.name);
  expectEqual(
    "the model page's source",
    await page.locator("[data-source]").getAttribute("data-source"),
    model.source,
  );
  await page.screenshot({ path: join(screenshots, "model.png"), fullPage: true });
  shots.push(join(screenshots, "model.png"));
} finally {
  await browser.close();
  server.close();
}

for (const file of shots) console.log(`screenshot ${file} (${statSync(file).size} bytes)`);
console.log(
  `site check ok: ${listed.length} filter pages and ${allModels.models.length} model pages ` +
    `exported; home, a filter page and a model page show what the files say`,
);
