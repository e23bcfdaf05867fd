// A static export (`next build` writes out/): no server, as a site of manifests is deployed.
/** @type {import("next").NextConfig} */
const config = {
  output: "export",
  // /models/huggingface/owner--name/index.html: any static file server serves it, whatever
  // the dots in a repo name.
  trailingSlash: true,
};

export default config;
